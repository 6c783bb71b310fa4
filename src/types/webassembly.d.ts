// Node has the WebAssembly JS API, but TypeScript declares it only in the DOM libraries, which
// would bring browser globals into a Node program. These are the parts herd uses.
declare namespace WebAssembly {
  interface Module {}
  var Module: { new (bytes: Uint8Array): Module };
  function validate(bytes: Uint8Array): boolean;

  interface Instance {
    readonly exports: Record<string, unknown>;
  }
  var Instance: { new (module: Module, imports?: Record<string, unknown>): Instance };

  interface Memory {
    readonly buffer: ArrayBuffer | SharedArrayBuffer;
    grow(pages: number): number;
  }
  var Memory: { new (descriptor: { initial: number; maximum?: number; shared?: boolean }): Memory };
}
