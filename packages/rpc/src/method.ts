/**
 * A method both sides agree on: its name on the wire, how the server reads its params, and
 * (as a type only) what it returns. Shared by client and server code, so a call's result
 * has the method's type and a handler receives params already checked.
 */
export interface Method<Params, Result> {
  readonly name: string;
  /**
   * Turns the params as they arrive (parsed JSON) into the handler's Params, or throws an
   * InvalidRequestError saying what is wrong: it runs on the server before any work.
   */
  readonly parse: (params: unknown) => Params;
  /** Never set: carries the result type from the definition to RpcClient.call(). */
  readonly resultType?: Result;
}

export function defineMethod<Params, Result>(definition: {
  name: string;
  parse: (params: unknown) => Params;
}): Method<Params, Result> {
  if (definition.name === '') throw new TypeError('a method needs a name');
  return Object.freeze({ name: definition.name, parse: definition.parse });
}

export type ParamsOf<M> = M extends Method<infer Params, unknown> ? Params : never;
export type ResultOf<M> = M extends Method<unknown, infer Result> ? Result : never;
