/// <reference lib="dom" />
// htm's tagged templates bound to preact's h: components without a JSX transform in the build.
// (htm/preact, not htm + bind: its types say the same as its ESM build under NodeNext resolution)
export { html } from 'htm/preact';
