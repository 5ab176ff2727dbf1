/** The text of a thrown value, to put in a message that says what failed and where. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
