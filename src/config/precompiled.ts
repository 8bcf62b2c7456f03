import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Ajv, FormatDefinition, Options, ValidateFunction } from 'ajv';
import { buildFile } from '../layout.ts';
import { onFirstUse } from '../lazy-package.ts';
import { log } from '../observability/log.ts';

/*
 * Schema validators compiled when the package is built instead of at every start.
 *
 * ajv turns a schema into JavaScript source, then into a function. A build (scripts/bundle.mjs) has
 * ajv write that source for the object kinds' schemas and portico.yaml's into dist/validators.cjs
 * (ajv's "standalone" code); a start then loads the functions from there and neither loads ajv's
 * compiler nor compiles. Measured on the 2-core machine of bench:scale: loading ajv ~30 ms,
 * compiling the route and upstream validators ~50 ms, portico.yaml's ~20 ms, at every start of the
 * process that validates (the gateway, a primary of workers); the file loads, and its route and
 * upstream validators run once, in ~18 ms.
 *
 * A group's entry in the file is used only when it was written for the very schemas, options and
 * formats the running code has (a hash of them); otherwise (a rebuild by tsc alone, the sources run
 * through tsx, no file) its validators are compiled here on first use, as before. Both ways give
 * the same functions: ajv generates the same code for both, which test/config/precompiled.test.ts
 * checks over each kind's valid and invalid objects.
 */

/** Validators that share ajv options and formats: each schema by name. */
export interface ValidatorGroup {
  name: string;
  options: Options;
  schemas: Readonly<Record<string, object>>;
  /** formats of the schemas (functions: the file's code gets them from the running code) */
  formats?: Readonly<Record<string, FormatDefinition<string>>>;
}

/** where a build writes the validators (the root of dist/) */
export const VALIDATORS_FILE = 'validators.cjs';

const ajvPackage = onFirstUse<typeof import('ajv')>('ajv');
const require = createRequire(import.meta.url);

/** What the file holds for a group: the hash it was written for and a factory of its functions. */
interface FileGroup {
  hash: string;
  create(formats: Readonly<Record<string, FormatDefinition<string>>>): Record<string, ValidateFunction>;
}

/** What the group's validators depend on besides ajv's code generator. */
export function groupHash(group: ValidatorGroup): string {
  const formats = Object.keys(group.formats ?? {}).sort();
  return createHash('sha256').update(JSON.stringify([group.options, group.schemas, formats])).digest('hex').slice(0, 32);
}

/** A group's validators: from the build's file when it matches, else compiled on first use. */
export class Validators {
  private readonly compiled = new Map<string, ValidateFunction>();
  private precompiled: Record<string, ValidateFunction> | undefined;
  private looked = false;
  private ajv: Ajv | undefined;

  constructor(
    private readonly group: ValidatorGroup,
    private readonly file = buildFile(VALIDATORS_FILE),
  ) {}

  /** The validator of schema `name` of the group. */
  get(name: string): ValidateFunction {
    const ready = this.fromFile()?.[name] ?? this.compiled.get(name);
    if (ready !== undefined) return ready;
    const schema = this.group.schemas[name];
    if (schema === undefined) throw new Error(`validators ${this.group.name}: no schema ${name}`);
    const validate = this.compiler().compile(schema);
    this.compiled.set(name, validate);
    return validate;
  }

  /** Whether the validators come from the build's file (checked on first use). */
  get fromBuild(): boolean {
    return this.fromFile() !== undefined;
  }

  private fromFile(): Record<string, ValidateFunction> | undefined {
    if (!this.looked) {
      this.looked = true;
      try {
        const entry = (require(this.file) as { groups?: Record<string, FileGroup> }).groups?.[this.group.name];
        if (entry !== undefined && entry.hash === groupHash(this.group)) this.precompiled = entry.create(this.group.formats ?? {});
      } catch (err) {
        // no build (the sources), or a file that does not load: the validators are compiled
        if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') {
          log.warn({ file: this.file, err: (err as Error).message }, `cannot use the build's ${this.group.name} validators: compiling them`);
        }
      }
    }
    return this.precompiled;
  }

  private compiler(): Ajv {
    if (this.ajv === undefined) {
      this.ajv = new (ajvPackage().Ajv)(this.group.options);
      for (const [name, format] of Object.entries(this.group.formats ?? {})) this.ajv.addFormat(name, format);
    }
    return this.ajv;
  }
}

/**
 * The text of a validators file for `groups`: CommonJS (its runtime helpers are `require`d from
 * ajv's package), one factory per group, so that two groups' generated names cannot clash and a
 * group is instantiated only when the running code asks for it.
 */
export function validatorsModule(groups: readonly ValidatorGroup[]): string {
  const { Ajv, _ } = ajvPackage();
  const standaloneCode = (require('ajv/dist/standalone') as { default: (ajv: Ajv, refs: Record<string, string>) => string }).default;
  const parts = groups.map((group) => {
    const ajv = new Ajv({ ...group.options, code: { ...group.options.code, source: true, formats: _`formats` } });
    for (const [name, format] of Object.entries(group.formats ?? {})) ajv.addFormat(name, format);
    for (const [name, schema] of Object.entries(group.schemas)) ajv.addSchema(schema, name);
    const code = standaloneCode(ajv, Object.fromEntries(Object.keys(group.schemas).map((name) => [name, name])));
    return `${JSON.stringify(group.name)}: {\nhash: ${JSON.stringify(groupHash(group))},\ncreate(formats) {\nconst exports = {};\n${code}\nreturn exports;\n}\n}`;
  });
  return `// ajv's code for Portico's schema validators, written by scripts/bundle.mjs (src/config/precompiled.ts)\n"use strict";\nexports.groups = {\n${parts.join(',\n')}\n};\n`;
}
