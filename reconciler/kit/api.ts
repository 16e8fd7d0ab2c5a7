// API error helpers shared by the reconciler.

/** The HTTP status of a failed API call, if it has one. */
export function statusCode(err: unknown): number | undefined {
  if (err && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}
