// The registry as the editor shows it: concepts to pick, models and history events in words.
import { test, equal, assert } from "./harness.js";
import { conceptChoices, conceptInput, createsConcept, describeEvent, describeModel, formatTime, historyRows, isConceptName, lastPageAfter, shortBlob } from "/js/concepts.js";
import { buildForm } from "/js/schema-form.js";

const listing = await (await fetch("./fixtures/tasks.json")).json();
const form = (name) => buildForm(listing.tasks.find((t) => t.name === name));
const MODEL = "sha256-" + "ab".repeat(32);
const ADAPTER = "sha256-" + "cd".repeat(32);

test("concepts: the overview becomes choices, sorted, with their model said", () => {
  const choices = conceptChoices({
    concepts: [
      { concept: "tabby", model_id: "", version: 0, pending_count: 2 },
      { concept: "rex", model_id: MODEL, version: 3, pending_count: 0 },
      { concept: "", model_id: MODEL },
    ],
  });
  equal(choices.map((c) => [c.name, c.version, c.pending]), [["rex", 3, 0], ["tabby", 0, 2]]);
  equal(choices[0].label, "rex — version 3 · sha256-abababab…");
  equal(choices[1].label, "tabby — no model yet · 2 adapters waiting");
  equal(conceptChoices(null), []);
  equal(describeModel({ model: MODEL, version: 1, pending: 1 }), "version 1 · sha256-abababab… · 1 adapter waiting");
  equal(shortBlob(""), "—");
});

test("concepts: a fine-tune teaches its concept, a painting task uses one", () => {
  equal([createsConcept(form("finetune")), createsConcept(form("txt2img")), createsConcept(form("img2img"))], [true, false, false]);
  equal([conceptInput(form("finetune")), conceptInput(form("txt2img")), conceptInput(form("upscale"))], ["concept", "concept", null]);
  assert(isConceptName("rex-2.v_1") && !isConceptName("Rex") && !isConceptName(""));
});

test("concepts: history events read as sentences, newest first", () => {
  const events = [
    { seq: 1, index: 7, kind: "adapter", adapter: ADAPTER, weight: 3, by: "lb1abcdefghijklmnopqrstuvwxyz", at: 0 },
    { seq: 2, index: 9, kind: "merge", model: MODEL, parent: null, adapters: [ADAPTER], weights: [3], version: 1, by: "lb1x", at: Date.UTC(2030, 0, 2, 3, 4) },
    { seq: 3, index: 12, kind: "metadata", metadata: { title: "Rex", old: null }, by: "lb1x", at: 1 },
  ];
  const rows = historyRows(events);
  equal(rows.map((r) => r.seq), [3, 2, 1]);
  equal(rows[2].text, "adapter sha256-cdcdcdcd… submitted, weight 3");
  equal(rows[2].by, "lb1abcde…uvwxyz");
  equal(rows[1].text, "1 adapter merged → version 1, model sha256-abababab…");
  equal(rows[0].text, "metadata title=Rex, old=(removed)");
  assert(/^2030-01-0[12] \d\d:\d\d$/.test(rows[1].at), rows[1].at);
  equal([formatTime(0), formatTime(undefined)], ["", ""]);
  equal(historyRows(events, 2).length, 2);
  equal(describeEvent({ kind: "weird" }).text, "weird");
  equal([lastPageAfter(45), lastPageAfter(5), lastPageAfter(undefined)], [25, 0, 0]);
});
