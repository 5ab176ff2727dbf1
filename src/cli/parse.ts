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

/**
 * A parser of decimal integers of at least `min`: digits only, so a sign, an exponent, hex or
 * spaces are refused rather than read as some other number.
 */
export function integer(min: number): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) {
      const what = min === 0 ? 'a non-negative integer' : `an integer >= ${min}`;
      throw new Error(`"${text}" is not ${what}`);
    }
    return n;
  };
}
