"""Renders cases.json's conversations with the Qwen2.5 and Qwen3 chat templates (qwen2.5.jinja, qwen3.jinja, as
published in those models' tokenizer_config.json) through transformers' apply_chat_template, the way vLLM passes an
OpenAI request to it: tool-call `arguments` (a JSON string on the wire) parsed into objects, null content as "".
Writes goldens.json. Run: python3 make.py (transformers 5.x; each case's tokenizer, for its BOS and EOS, from the
fixture it names, ../tiny-qwen3-moe by default). The Llama 2, Llama 3, DeepSeek-R1, Mixtral-8x7B-Instruct-v0.1 (the first and the
current one), Qwen3-Coder, Mistral v3 (mistral-common's, with tools) and Tulu templates are rendered the same way, but for
cases marked arguments_as_text: their tool-call arguments stay JSON text (written as json.dumps writes them). Mistral's
templates, given the arguments as objects, concatenate plain strings to the `tojson|safe` Markup, and Jinja
HTML-escapes the call's own quotes (`{&#34;name&#34;: …`): not the format mistral-common writes and the models were
trained on."""
import copy, json, os
from transformers import AutoTokenizer

here = os.path.dirname(os.path.abspath(__file__))
tokenizers = {}
cases = json.load(open(os.path.join(here, "cases.json")))
out = []
for case in cases:
    template = open(os.path.join(here, case["template"])).read()
    messages = copy.deepcopy(case["request"]["messages"])
    for m in messages:
        if m.get("content") is None:
            m["content"] = ""
        for call in m.get("tool_calls") or []:
            if not case.get("arguments_as_text"):
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    kwargs = case["request"].get("chat_template_kwargs", {})
    name = case.get("tokenizer", "tiny-qwen3-moe")
    tok = tokenizers.setdefault(name, AutoTokenizer.from_pretrained(os.path.join(here, "..", name)))
    # vLLM's request fields: add_generation_prompt (default true) and continue_final_message (the reply goes on
    # from the last message).
    cont = case["request"].get("continue_final_message", False)
    gen = case["request"].get("add_generation_prompt", not cont)
    text = tok.apply_chat_template(messages, tools=case["request"].get("tools"), chat_template=template, tokenize=False,
                                   add_generation_prompt=gen, continue_final_message=cont, **kwargs)
    out.append({"name": case["name"], "template": case["template"], "expected": text})
json.dump(out, open(os.path.join(here, "goldens.json"), "w"), ensure_ascii=False, indent=1)
print(len(out), "goldens")
