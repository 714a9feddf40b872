// Chat-template rendering with @huggingface/jinja, set up the way Python transformers renders
// templates: trim_blocks and lstrip_blocks on, one trailing newline of the template dropped
// (Jinja's keep_trailing_newline=False), and `raise_exception(message)` raising an error that
// carries the template's message.
import { Environment, Interpreter, Template } from "@huggingface/jinja";

import { SpinNativeError } from "../core/errors.js";

/**
 * The chat template of HuggingFaceH4/zephyr-7b-beta and the alignment-handbook (the models
 * SPIN was trained on), used when a tokenizer defines no chat template of its own.
 *
 * For eos `</s>` it renders a user turn `x` with the generation prompt as
 * `"<|user|>\n{x}</s>\n<|assistant|>\n"` and an assistant turn `y` as `"<|assistant|>\n{y}</s>\n"`.
 */
export const ZEPHYR_CHAT_TEMPLATE =
  "{% for message in messages %}\n" +
  "{% if message['role'] == 'user' %}\n" +
  "{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'system' %}\n" +
  "{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'assistant' %}\n" +
  "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n" +
  "{% endif %}\n" +
  "{% if loop.last and add_generation_prompt %}\n" +
  "{{ '<|assistant|>' }}\n" +
  "{% endif %}\n" +
  "{% endfor %}";

/** Thrown inside rendering by the template's `raise_exception`; turned into a SpinNativeError. */
class TemplateRaised extends Error {}

const compiled = new Map<string, Template>();

function compile(template: string, source: string, call: string): Template {
  let t = compiled.get(template);
  if (t === undefined) {
    try {
      // The Template constructor tokenizes with trim_blocks and lstrip_blocks, as transformers does.
      t = new Template(template);
    } catch (e) {
      throw new SpinNativeError(
        `${source}: the chat template does not parse: ${e instanceof Error ? e.message : String(e)}`,
        "INVALID_ARGUMENT",
        call,
      );
    }
    if (compiled.size >= 32) compiled.clear();
    compiled.set(template, t);
  }
  return t;
}

/** Python's `range(start, stop, step)` as a list, like the jinja package's own global. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0) throw new Error("range() step must not be zero");
  const out: number[] = [];
  if (step > 0) for (let i = start; i < stop; i += step) out.push(i);
  else for (let i = start; i > stop; i += step) out.push(i);
  return out;
}

/** `strftime_now(format)`, the subset of codes the jinja package supports (%Y %m %d %b %B %H %M %%). */
function strftimeNow(format: string): string {
  const date = new Date();
  const pad2 = (n: number): string => (n < 10 ? "0" + n : String(n));
  return format.replace(/%[YmdbBHM%]/g, (code) => {
    switch (code) {
      case "%Y":
        return String(date.getFullYear());
      case "%m":
        return pad2(date.getMonth() + 1);
      case "%d":
        return pad2(date.getDate());
      case "%b":
        return new Intl.DateTimeFormat(undefined, { month: "short" }).format(date);
      case "%B":
        return new Intl.DateTimeFormat(undefined, { month: "long" }).format(date);
      case "%H":
        return pad2(date.getHours());
      case "%M":
        return pad2(date.getMinutes());
      default:
        return "%";
    }
  });
}

/**
 * Renders a Jinja chat template the way Python transformers does.
 *
 * @param template - The template source.
 * @param variables - The template's variables (`messages`, `add_generation_prompt`, special tokens, ...).
 * @param source - Where the template came from, for error messages (e.g. `".../tokenizer_config.json chat_template"`).
 * @param call - The public call, for the error's `call` field.
 * @returns The rendered text.
 * @throws SpinNativeError `INVALID_ARGUMENT` when the template does not parse, fails while
 *   rendering, or calls `raise_exception(message)` (the message is quoted in the error).
 */
export function renderChatTemplate(
  template: string,
  variables: Readonly<Record<string, unknown>>,
  source: string,
  call: string,
): string {
  const program = compile(template, source, call).parsed;
  // Template.render would declare its own raise_exception (a plain Error, indistinguishable from
  // any other rendering failure), so the globals are declared here instead.
  const env = new Environment();
  env.set("false", false);
  env.set("true", true);
  env.set("none", null);
  env.set("False", false);
  env.set("True", true);
  env.set("None", null);
  env.set("raise_exception", (message: unknown): never => {
    throw new TemplateRaised(String(message));
  });
  env.set("range", range);
  env.set("strftime_now", strftimeNow);
  for (const [key, value] of Object.entries(variables)) {
    if (value === undefined) continue;
    if (env.variables.has(key)) {
      throw new SpinNativeError(`chat template variable '${key}' is reserved`, "INVALID_ARGUMENT", call);
    }
    env.set(key, value);
  }
  let result: unknown;
  try {
    result = new Interpreter(env).run(program).value;
  } catch (e) {
    if (e instanceof TemplateRaised) {
      throw new SpinNativeError(`${source}: the chat template raised an exception: ${e.message}`, "INVALID_ARGUMENT", call);
    }
    throw new SpinNativeError(
      `${source}: the chat template failed to render: ${e instanceof Error ? e.message : String(e)}`,
      "INVALID_ARGUMENT",
      call,
    );
  }
  if (typeof result !== "string") {
    throw new SpinNativeError(`${source}: the chat template did not render to a string`, "INVALID_ARGUMENT", call);
  }
  return result;
}
