// Scripted scenarios for the `ollama` and `openai` npm packages, run by node against a target.
//   node probe.cjs <ollama-js|openai-js> <node_modules folder> <base URL> <model> <embed model or "">
// Prints one JSON object: {version, scenarios: [{name, status, step, exception}]}. Only what the client hands
// back is judged (types, fields a user reads), never the generated text.
'use strict';
const path = require('path');
const [client, modules, url, model, embedModel] = process.argv.slice(2);
const load = (name) => require(path.join(modules, name));
const version = (name) => require(path.join(modules, name, 'package.json')).version;

const SEED = 42, CAP = 16, UNKNOWN = 'no-such-model-xyz:1b';
const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
const QUESTION = [{ role: 'user', content: 'What is the weather in Paris? Use the tool.' }];
const TOOL = { type: 'function', function: { name: 'get_weather', description: 'Get the current weather in a city.',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const SCHEMA = { type: 'object', properties: { answer: { type: 'boolean' } }, required: ['answer'] };
const SKY = [{ role: 'user', content: 'Is the sky blue? Answer as JSON.' }];

class NotAsOllama extends Error {}
function check(ok, message) { if (!ok) throw new NotAsOllama(message); }

async function runAll(scenarios) {
  const out = [];
  for (const [name, fn] of scenarios) {
    const state = { step: '' };
    const step = (call) => { state.step = call; };
    try {
      await fn(step);
      out.push({ name, status: 'pass', step: '', exception: '' });
    } catch (err) {
      const kind = err instanceof NotAsOllama ? 'not as Ollama' : (err && err.constructor ? err.constructor.name : 'Error');
      const text = String((err && err.message) || err).split('\n')[0].slice(0, 300);
      out.push({ name, status: 'fail', step: state.step, exception: `${kind}: ${text}` });
    }
  }
  return out;
}

function ollamaScenarios() {
  const { Ollama } = load('ollama');
  const c = new Ollama({ host: url });
  const options = { temperature: 0, seed: SEED, num_predict: CAP };
  const collect = async (iterable) => { const parts = []; for await (const p of iterable) parts.push(p); return parts; };
  const expect404 = async (call) => {
    try { await call(); } catch (err) {
      check(err.name === 'ResponseError', `${err.name} instead of ResponseError`);
      check(err.status_code === 404, `ResponseError with status ${err.status_code}, expected 404`);
      // a missing route's 404 ("404 page not found") is not a model-not-found answer
      check(String(err.error || err.message).includes(UNKNOWN), `the error does not name the model: ${err.message}`);
      return;
    }
    check(false, 'no ResponseError for an unknown model');
  };
  return [
    ['list', async (step) => { step('ollama.list()'); const r = await c.list();
      check(r.models.length > 0 && r.models.every((m) => typeof m.model === 'string'), 'no named models'); }],
    ['show', async (step) => { step(`ollama.show({model: '${model}'})`); const r = await c.show({ model });
      check(r.details !== undefined, 'show: no details'); }],
    ['chat', async (step) => { step('ollama.chat({model, messages})'); const r = await c.chat({ model, messages: MESSAGES, options });
      check(r.message.role === 'assistant' && typeof r.message.content === 'string' && r.done === true, 'no finished assistant message'); }],
    ['chat stream', async (step) => { step('ollama.chat({model, messages, stream: true})');
      const parts = await collect(await c.chat({ model, messages: MESSAGES, options, stream: true }));
      check(parts.length >= 2 && parts[parts.length - 1].done === true, 'the stream did not end with done'); }],
    ['generate', async (step) => { step('ollama.generate({model, prompt})'); const r = await c.generate({ model, prompt: 'Hello', options });
      check(typeof r.response === 'string' && r.done === true, 'no finished response'); }],
    ['generate stream', async (step) => { step('ollama.generate({model, prompt, stream: true})');
      const parts = await collect(await c.generate({ model, prompt: 'Hello', options, stream: true }));
      check(parts.length >= 2 && parts[parts.length - 1].done === true, 'the stream did not end with done'); }],
    ['embed', async (step) => { check(embedModel, 'no embedding model on the target');
      step(`ollama.embed({model: '${embedModel}', input: [2 texts]})`);
      const r = await c.embed({ model: embedModel, input: ['first text', 'second text'] });
      check(r.embeddings.length === 2 && r.embeddings[0].length === r.embeddings[1].length, '2 equal-length embeddings expected'); }],
    ['tool round trip', async (step) => { step('ollama.chat({model, messages, tools: [get_weather]})');
      const first = await c.chat({ model, messages: QUESTION, tools: [TOOL], options });
      for (const call of first.message.tool_calls || []) check(typeof call.function.arguments === 'object', 'tool call arguments are not an object');
      step('ollama.chat({model, messages + [assistant tool_calls, tool result], tools})');
      const history = [...QUESTION, { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
        { role: 'tool', content: '{"temperature_c": 18}', tool_name: 'get_weather' }];
      const second = await c.chat({ model, messages: history, tools: [TOOL], options });
      check(second.message.role === 'assistant', 'no assistant message after the tool result'); }],
    ['structured output', async (step) => { step('ollama.chat({model, messages, format: <JSON schema>})');
      const r = await c.chat({ model, messages: SKY, format: SCHEMA, options: { ...options, num_predict: 32 } });
      check(r.done_reason !== 'length', 'the constrained answer did not end within 32 tokens');
      const data = JSON.parse(r.message.content);
      check(typeof data.answer === 'boolean', 'content does not match the schema'); }],
    ['error: unknown model', async (step) => { step(`ollama.chat({model: '${UNKNOWN}', messages})`);
      await expect404(() => c.chat({ model: UNKNOWN, messages: MESSAGES, options })); }],
    ['error: unknown model in a stream', async (step) => { step(`ollama.generate({model: '${UNKNOWN}', prompt, stream: true})`);
      await expect404(async () => collect(await c.generate({ model: UNKNOWN, prompt: 'x', options, stream: true }))); }],
    ['ps', async (step) => { step('ollama.ps()'); const r = await c.ps(); check(Array.isArray(r.models), 'ps: models is not an array'); }],
  ];
}

function openaiScenarios() {
  const OpenAI = load('openai').OpenAI;
  const c = new OpenAI({ baseURL: url.replace(/\/$/, '') + '/v1', apiKey: 'ollama', maxRetries: 0, timeout: 120000 });
  const common = { max_tokens: CAP, temperature: 0, seed: SEED };
  const expectError = async (klass, call, what, mention) => {
    try { await call(); } catch (err) {
      check(err instanceof klass, `${err.constructor.name} instead of ${klass.name}`);
      check(!mention || String(err.message).includes(mention), `the error does not name ${mention}: ${err.message}`);
      return;
    }
    check(false, `no ${klass.name} for ${what}`);
  };
  return [
    ['models.list', async (step) => { step('client.models.list()'); const ids = [];
      for await (const m of c.models.list()) ids.push(m.id);
      check(ids.includes(model), `${model} is not listed`); }],
    ['chat', async (step) => { step('client.chat.completions.create({model, messages})');
      const r = await c.chat.completions.create({ model, messages: MESSAGES, ...common });
      check(r.choices[0].message.role === 'assistant' && typeof r.choices[0].message.content === 'string', 'no assistant text');
      check(r.usage && r.usage.completion_tokens > 0, 'no usage'); }],
    ['chat stream', async (step) => { step('client.chat.completions.create({model, messages, stream: true})');
      const stream = await c.chat.completions.create({ model, messages: MESSAGES, stream: true, ...common });
      const ids = new Set(); let finishes = 0;
      for await (const chunk of stream) { ids.add(chunk.id); if (chunk.choices[0] && chunk.choices[0].finish_reason) finishes++; }
      check(finishes === 1, `${finishes} finish_reason(s)`); check(ids.size === 1, 'chunks carry different ids'); }],
    ['chat stream helper', async (step) => { step('client.chat.completions.stream({model, messages}).finalChatCompletion()');
      const runner = c.chat.completions.stream({ model, messages: MESSAGES, ...common });
      const final = await runner.finalChatCompletion();
      check(typeof final.choices[0].message.content === 'string', 'the accumulated completion has no text'); }],
    ['completion', async (step) => { step('client.completions.create({model, prompt})');
      const r = await c.completions.create({ model, prompt: 'Hello', ...common });
      check(typeof r.choices[0].text === 'string', 'no completion text'); }],
    ['embeddings', async (step) => { check(embedModel, 'no embedding model on the target');
      step('client.embeddings.create({model, input: [2 texts]})');
      const r = await c.embeddings.create({ model: embedModel, input: ['first text', 'second text'] });
      check(r.data.length === 2 && Array.isArray(r.data[0].embedding), '2 embeddings expected'); }],
    ['tool round trip', async (step) => { step('client.chat.completions.create({model, messages, tools: [get_weather]})');
      const first = await c.chat.completions.create({ model, messages: QUESTION, tools: [TOOL], ...common });
      for (const call of first.choices[0].message.tool_calls || []) check(typeof JSON.parse(call.function.arguments) === 'object', 'arguments are not a JSON object');
      step('client.chat.completions.create({model, messages + [tool_calls, tool result], tools})');
      const history = [...QUESTION, { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temperature_c": 18}' }];
      const second = await c.chat.completions.create({ model, messages: history, tools: [TOOL], ...common });
      check(second.choices[0].message.role === 'assistant', 'no assistant message after the tool result'); }],
    ['structured output', async (step) => { step('client.chat.completions.create({model, messages, response_format: json_schema})');
      const r = await c.chat.completions.create({ model, messages: SKY, ...common, max_tokens: 32,
        response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: SCHEMA } } });
      check(r.choices[0].finish_reason !== 'length', 'the constrained answer did not end within 32 tokens');
      check(typeof JSON.parse(r.choices[0].message.content).answer === 'boolean', 'content does not match the schema'); }],
    ['error: unknown model', async (step) => { step(`client.chat.completions.create({model: '${UNKNOWN}', messages})`);
      await expectError(OpenAI.NotFoundError, () => c.chat.completions.create({ model: UNKNOWN, messages: MESSAGES, ...common }), 'an unknown model', UNKNOWN); }],
    ['error: bad request', async (step) => { step('client.chat.completions.create({model, messages: []})');
      await expectError(OpenAI.BadRequestError, () => c.chat.completions.create({ model, messages: [], ...common }), 'an empty messages list'); }],
  ];
}

(async () => {
  const pkg = client === 'ollama-js' ? 'ollama' : 'openai';
  const scenarios = client === 'ollama-js' ? ollamaScenarios() : openaiScenarios();
  const results = await runAll(scenarios);
  process.stdout.write(JSON.stringify({ version: version(pkg), scenarios: results }) + '\n');
})().catch((err) => { process.stderr.write(`probe broke: ${err && err.stack ? err.stack.split('\n')[0] : err}\n`); process.exit(4); });
