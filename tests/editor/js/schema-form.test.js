// Form generation from the node's real task schemas (the Python side serves them as a
// fixture built from lightbox_node.tasks: every built-in task and the GPU test tasks).
import { test, equal, assert } from "./harness.js";
import { buildForm, readInputs, problemsByInput, taskEntries, boxLimits, fieldOf, imageListProblems, RANDOM_SEED, TEXT_FORMATS } from "/js/schema-form.js";

const listing = await (await fetch("./fixtures/tasks.json")).json();
const schemas = Object.fromEntries([...listing.tasks, ...listing.federated_only].map((t) => [t.name, t]));
const form = (name) => buildForm(schemas[name]);
const field = (f, name) => f.fields.find((x) => x.name === name);

test("forms: every input type gets its widget", () => {
  const seen = {};
  for (const schema of Object.values(schemas)) for (const f of buildForm(schema).fields) seen[f.type] = ["textarea", "concept"].includes(f.widget) ? "text" : f.widget;
  equal(seen, { text: "text", integer: "integer", number: "number", choice: "select", seed: "seed", image: "image", mask: "mask", boolean: "checkbox", image_list: "image_list" });
  equal(fieldOf({ type: "hologram", name: "h", label: "H" }).widget, "unsupported");
});

test("forms: groups follow the schema's order, fields their `order`, advanced ones apart", () => {
  const f = form("txt2img");
  equal(f.groups.map((g) => g.name), ["prompt", "size", "sampling"]);
  equal(f.groups[0].fields.map((x) => x.name), ["prompt", "negative_prompt", "concept"]);
  equal(f.groups[2].fields.map((x) => x.name), ["steps", "guidance_scale"]);
  equal(f.groups[2].advanced.map((x) => x.name), ["sampler", "seed"]);
  equal(form("echo").groups.map((g) => g.label), ["Settings"]);
});

test("forms: defaults, bounds, steps and help come from the schema", () => {
  const f = form("txt2img");
  const width = field(f, "width");
  equal([width.initial, width.min, width.max, width.step, width.unit], ["512", 64, 2048, 8, "px"]);
  assert(width.help.includes("multiple of 8"));
  equal(width.hint, "64–2048 px, step 8");
  equal(field(f, "guidance_scale").initial, "7.5");
  equal(field(f, "sampler").initial, "euler_a");
  equal(field(f, "seed").initial, RANDOM_SEED);
  equal(field(f, "prompt").widget, "textarea");
  equal(field(f, "prompt").required, true);
  equal(field(form("upscale"), "scale").options.map((o) => o.value), [2, 4]);
  equal(field(form("remove_background"), "alpha_matting").initial, false);
  equal(field(form("sleep"), "seconds").initial, "1");
  equal(field(form("fail"), "message").initial, "asked to fail");
});

test("forms: reading values types them and leaves empty optional fields out", () => {
  const f = form("txt2img");
  const raw = { prompt: "a lighthouse", negative_prompt: "", width: "512", height: "768", batch_size: "2", steps: "", guidance_scale: "7.5", sampler: "ddim", seed: "42" };
  const { inputs, problems } = readInputs(f, raw);
  equal(problems, []);
  equal(inputs, { prompt: "a lighthouse", negative_prompt: "", width: 512, height: 768, batch_size: 2, guidance_scale: 7.5, sampler: "ddim", seed: 42 });
  equal(readInputs(form("upscale"), { scale: "2", tile_size: "512" }, { image: "blob" }).inputs.scale, 2, "integer choices stay integers");
});

test("forms: mistakes are caught before sending, with the node's wording", () => {
  const f = form("txt2img");
  const { problems } = readInputs(f, { prompt: "", width: "500", height: "4096", steps: "ten", guidance_scale: "7.55", seed: "-1" });
  const by = Object.fromEntries(problems.map((p) => [p.field, p.message]));
  equal(by.prompt, "must not be empty");
  equal(by.width, "must be a multiple of 8 (nearest: 496 or 504)");
  equal(by.height, "must be at most 2048 px, got 4096");
  equal(by.steps, 'must be a whole number, not "ten"');
  assert(by.guidance_scale.startsWith("must be a multiple of 0.1"), by.guidance_scale);
  assert(by.seed.includes("'random'"));
});

test("forms: image inputs must come from the box", () => {
  const { problems } = readInputs(form("img2img"), { prompt: "x" }, {});
  equal(problems.find((p) => p.field === "image").message, "place the generation box over the picture");
  const list = readInputs(form("finetune"), { concept_token: "sks" }, { instance_images: ["a", "b"] });
  equal(list.problems.find((p) => p.field === "instance_images").message, "needs at least 3 images, got 2");
});

test("forms: the box binds images, masks, sizes and outpaint extensions", () => {
  equal(form("txt2img").bindings, { images: [], masks: [], lists: [], width: "width", height: "height", overhang: null });
  equal(form("inpaint").bindings.masks, [{ name: "mask", image: "image" }]);
  equal(form("outpaint").bindings.overhang, { left: "left", right: "right", top: "top", bottom: "bottom" });
  equal(form("echo").box, null, "a task without images takes nothing from the box");
  const limits = form("img2img").box;
  equal([limits.multiple, limits.minW, limits.maxW], [8, 64, 2048]);
  equal(boxLimits(form("upscale").fields).multiple, 1);
});

test("forms: the node's problems land next to their fields", () => {
  const f = form("img2img");
  const by = problemsByInput(f, [
    { field: "image.width", message: "must be a multiple of 8, got 500" },
    { field: "prompt", message: "must not be empty" },
    { field: "", message: "the task is unknown" },
  ]);
  equal(by.image, ["width: must be a multiple of 8, got 500"]);
  equal(by.prompt, ["must not be empty"]);
  equal(by[""], ["the task is unknown"]);
});

test("forms: the task list says who offers what", () => {
  const entries = taskEntries({
    tasks: [{ name: "echo", title: "Echo", hosts: [{ peer_id: "lb1abcdefghijklmnopqrstuvwxyz", attached: true, free_slots: 2 }] }],
    federated_only: [{ name: "txt2img", title: "Text to image", hosts: [{ peer_id: "lb1zz", attached: false }] }],
  });
  equal(entries.map((e) => [e.name, e.federated]), [["echo", false], ["txt2img", true]]);
  equal(entries[0].hosts[0].label, "attached lb1abcde…uvwxyz · 2 free");
  equal(entries[1].hosts[0].label, "federated lb1zz");
});

test("forms: a text input with the concept format gets the concept picker and its pattern", () => {
  const teach = form("finetune");
  equal([field(teach, "concept").widget, field(teach, "concept").required], ["concept", true]);
  equal(field(teach, "concept_token").widget, "text");
  equal(field(form("txt2img"), "concept").widget, "concept");
  const raw = { concept: "Rex the dog", concept_token: "sks", train_steps: "800" };
  const by = (r) => Object.fromEntries(readInputs(teach, r, {}).problems.map((p) => [p.field, p.message]));
  equal(by(raw).concept, `must be ${TEXT_FORMATS.concept.described}`);
  equal(by({ ...raw, concept: "" }).concept, "must not be empty");
  equal(by({ ...raw, concept: "rex-the.dog_2" }).concept, undefined);
  assert(TEXT_FORMATS.concept.pattern.test("a".repeat(128)) && !TEXT_FORMATS.concept.pattern.test("a".repeat(129)));
  assert(!TEXT_FORMATS.concept.pattern.test("-rex"), "a name starts with a letter or digit");
  const paint = readInputs(form("txt2img"), { prompt: "a dog", concept: "" });
  equal([paint.problems, "concept" in paint.inputs], [[], false], "an empty optional concept is left out");
  equal(readInputs(form("txt2img"), { prompt: "a dog", concept: "rex" }).inputs.concept, "rex");
});

test("forms: an image list is checked for its count and each picture's size", () => {
  const photos = field(form("finetune"), "instance_images");
  equal([photos.min_count, photos.max_count, photos.min_width], [3, 20, 256]);
  const ok = (label, width = 512, height = 512) => ({ label, width, height, blob: label });
  equal(imageListProblems(photos, [ok("a"), ok("b"), ok("c")]), []);
  equal(imageListProblems(photos, [ok("a"), ok("b")]), ["needs at least 3 images, got 2"]);
  equal(imageListProblems(photos, Array.from({ length: 21 }, (_, i) => ok(`p${i}`))), ["takes at most 20 images, got 21"]);
  equal(imageListProblems(photos, [ok("a"), ok("tiny", 200, 300), ok("tall", 256, 5000)]), [
    "tiny: width must be at least 256 px, got 200",
    "tall: height must be at most 4096 px, got 5000",
  ]);
  equal(imageListProblems({ ...photos, max_pixels: 100_000 }, [ok("a"), ok("b"), ok("c", 256, 256)])[0], "a: is 512×512 = 262144 pixels, over the limit of 100000");
  const read = readInputs(form("finetune"), { concept: "rex", concept_token: "sks" }, { instance_images: [ok("a"), ok("b"), ok("c")] });
  equal([read.problems, read.inputs.instance_images], [[], ["a", "b", "c"]], "the blobs are sent");
});
