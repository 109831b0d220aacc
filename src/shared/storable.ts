// PostgreSQL text and jsonb cannot hold the NUL character or an unpaired UTF-16 surrogate; anything a handler
// produces passes through here.

/** Text that is not a well-formed UTF-16 string: an unpaired surrogate, which PostgreSQL cannot store as itself. */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

/**
 * Text with NUL characters and unpaired surrogates replaced by U+FFFD. Both would fail the statement that
 * stores them, in a JSON batch of failures the whole batch.
 */
export function storableText(text: string): string {
  const withoutNul = text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text;
  return LONE_SURROGATE.test(withoutNul) ? withoutNul.replace(LONE_SURROGATES, '\uFFFD') : withoutNul;
}

// A \u0000 escape not preceded by an escaped backslash.
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;

/** Whether JSON text encodes a NUL character somewhere. */
export function hasNulEscape(jsonText: string): boolean {
  NUL_ESCAPE.lastIndex = 0;
  return jsonText.includes('\\u0000') && NUL_ESCAPE.test(jsonText);
}

// JSON.stringify writes a surrogate as an escape only when it is unpaired (a paired one stays a character), and
// jsonb refuses such an escape: it is not a character of any encoding.
const LONE_SURROGATE_ESCAPE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/** Whether JSON text made by JSON.stringify encodes an unpaired UTF-16 surrogate somewhere. */
export function hasLoneSurrogateEscape(jsonText: string): boolean {
  LONE_SURROGATE_ESCAPE.lastIndex = 0;
  return jsonText.includes('\\ud') && LONE_SURROGATE_ESCAPE.test(jsonText);
}

/**
 * JSON text of a value, with NUL characters and unpaired surrogates in its strings replaced by U+FFFD; throws
 * if not serialisable.
 */
export function storableJson(value: unknown): string {
  let text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`${typeof value} is not a JSON value`);
  if (text.includes('\\u0000')) text = text.replace(NUL_ESCAPE, '$1\\ufffd');
  if (hasLoneSurrogateEscape(text)) text = text.replace(LONE_SURROGATE_ESCAPE, '$1\\ufffd');
  return text;
}
