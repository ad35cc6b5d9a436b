// llama.cpp's view of a GGUF file, through the npm package node-llama-cpp (pinned 3.22.1, its prebuilt
// CPU binary): the tests compare it with vktune's (tests/test_llamacpp.cpp).
//   node llama.mjs greedy MODEL.gguf LORA.gguf|- N ID,ID,...   -> the N greedy next ids after the prompt
//   node llama.mjs top1   MODEL.gguf LORA.gguf|- ID,ID,...     -> per position, the argmax next id
// Prints one JSON line {"ids": [...]}. NODE_PATH (or the package's folder) must hold node-llama-cpp.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.VKT_NODE_LLAMA_CPP ?? process.cwd(), "node_modules", "x.js"));
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));

const [mode, modelPath, loraPath, ...rest] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({
  contextSize: 256,
  batchSize: 256,
  threads: 2,
  ...(loraPath && loraPath !== "-" ? { lora: { adapters: [{ filePath: loraPath }] } } : {}),
});
const sequence = context.getSequence();
const parse = (text) => text.split(",").filter((t) => t !== "").map(Number);
const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
let ids = [];
if (mode === "greedy") {
  const count = Number(rest[0]);
  let input = parse(rest[1]);
  for (let i = 0; i < count; i++) {
    const items = input.map((t, k) => (k === input.length - 1 ? [t, greedy] : t));
    const out = await sequence.controlledEvaluate(items);
    const next = out[input.length - 1].next.token;
    ids.push(next);
    if (model.isEogToken(next)) break;
    input = [next];
  }
} else if (mode === "top1") {
  const input = parse(rest[0]);
  const out = await sequence.controlledEvaluate(input.map((t) => [t, greedy]));
  ids = out.map((o) => o.next.token);
} else {
  throw new Error("mode: greedy | top1");
}
console.log(JSON.stringify({ ids }));
await context.dispose();
await model.dispose();
await llama.dispose();
