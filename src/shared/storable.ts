// PostgreSQL text and jsonb cannot hold the NUL character; anything a handler produces passes through here.

/** Text with NUL characters replaced by U+FFFD. */
export function storableText(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text;
}

// A \u0000 escape not preceded by an escaped backslash.
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;

/** Whether JSON text encodes a NUL character somewhere. */
export function hasNulEscape(jsonText: string): boolean {
  NUL_ESCAPE.lastIndex = 0;
  return jsonText.includes('\\u0000') && NUL_ESCAPE.test(jsonText);
}

/** JSON text of a value, with NUL characters in its strings replaced by U+FFFD; throws if not serialisable. */
export function storableJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`${typeof value} is not a JSON value`);
  return text.includes('\\u0000') ? text.replace(NUL_ESCAPE, '$1\\ufffd') : text;
}
