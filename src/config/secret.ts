import { inspect } from 'node:util';

export const REDACTED = '***';

/**
 * A value that must never be printed: logs, spans, `/admin/config` and error messages all see
 * `***`. Only the code that puts it on the wire calls `reveal()`.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
