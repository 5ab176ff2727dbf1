import { InvalidArgumentError } from 'commander';

/** Adapts a parser that throws Error into one commander reports as an invalid argument. */
export function cliParser<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
    }
  };
}
