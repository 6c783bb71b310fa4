/** The parts of js-yaml 3 (which ships no types) that herd's task loader uses. */
declare module 'js-yaml' {
  export class Type {
    constructor(tag: string, options: { kind: 'scalar' | 'sequence' | 'mapping'; construct?: (data: unknown) => unknown });
  }
  export class Schema {
    constructor(definition: { include?: Schema[]; explicit?: Type[]; implicit?: Type[] });
  }
  export const DEFAULT_SAFE_SCHEMA: Schema;
  export class YAMLException extends Error {}
  export function safeLoad(text: string, options?: { schema?: Schema; filename?: string }): unknown;
  const jsYaml: { Type: typeof Type; Schema: typeof Schema; DEFAULT_SAFE_SCHEMA: Schema; safeLoad: typeof safeLoad; YAMLException: typeof YAMLException };
  export default jsYaml;
}
