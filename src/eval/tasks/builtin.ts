/**
 * herd's built-in tasks: lm-eval's task YAML files for the Llama 3.1 post's benchmarks, with the
 * post's shot counts. They are kept as text here (not .yaml files) so they ship inside dist/ and
 * go through exactly the loader a user's own task file goes through. Where a definition differs
 * from lm-eval's, the comment in the YAML says how and why (docs/eval.md lists them all).
 */
export const BUILTIN_TASKS: Readonly<Record<string, string>> = {
  arc_challenge: String.raw`
# lm-eval tasks/arc/arc_easy.yaml + arc_challenge.yaml; num_fewshot 25 as in the Llama 3.1 post.
task: arc_challenge
dataset_path: allenai/ai2_arc
dataset_name: ARC-Challenge
output_type: multiple_choice
training_split: train
validation_split: validation
test_split: test
doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
num_fewshot: 25
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
`,
  mmlu: String.raw`
# lm-eval tasks/mmlu/default/_default_template_yaml as one task over cais/mmlu "all": the per-subject
# description is a template over the subject field, and few-shot documents are the first 5 dev
# documents of the same subject (match_field), which is what each of lm-eval's 57 subtasks uses.
task: mmlu
dataset_path: cais/mmlu
dataset_name: all
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
  match_field: subject
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\n\n"
doc_to_text: "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
num_fewshot: 5
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
`,
  commonsense_qa: String.raw`
# lm-eval tasks/commonsense_qa/default.yaml, num_fewshot 7 as in the post. The options are listed
# from the document's own labels, so the 5-option Hub data renders exactly as lm-eval's template
# and a 4-option copy still works.
task: commonsense_qa
dataset_path: tau/commonsense_qa
training_split: train
test_split: validation
output_type: multiple_choice
doc_to_text: "Question: {{ question.strip() }}{% for label in choices['label'] %}{{ '\n' }}{{ label }}. {{ choices['text'][loop.index0] }}{% endfor %}\nAnswer:"
doc_to_target: answerKey
doc_to_choice: "{{ choices['label'] }}"
num_fewshot: 7
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
`,
  winogrande: String.raw`
# lm-eval tasks/winogrande/default.yaml (partial scoring: the context is the sentence up to the
# blank with each option, the continuation what follows), num_fewshot 5 as in the post.
task: winogrande
dataset_path: winogrande
dataset_name: winogrande_xl
output_type: multiple_choice
training_split: train
validation_split: validation
doc_to_text: !function winogrande.doc_to_text
doc_to_target: !function winogrande.doc_to_target
doc_to_choice: !function winogrande.doc_to_choice
num_fewshot: 5
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
`,
  boolq: String.raw`
# lm-eval tasks/super_glue/boolq/default.yaml.
task: boolq
dataset_path: super_glue
dataset_name: boolq
output_type: multiple_choice
training_split: train
validation_split: validation
doc_to_text: "{{passage}}\nQuestion: {{question}}?\nAnswer:"
doc_to_target: label
doc_to_choice: ["no", "yes"]
num_fewshot: 0
metric_list:
  - metric: acc
metadata:
  version: 2.0
`,
  hellaswag: String.raw`
# lm-eval tasks/hellaswag/hellaswag.yaml (process_docs from its utils.py), num_fewshot 10.
task: hellaswag
dataset_path: Rowan/hellaswag
output_type: multiple_choice
training_split: train
validation_split: validation
process_docs: !function hellaswag.process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{label}}"
doc_to_choice: "choices"
num_fewshot: 10
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
`,
  triviaqa: String.raw`
# lm-eval tasks/triviaqa/default.yaml, num_fewshot 5 as in the post.
task: triviaqa
dataset_path: trivia_qa
dataset_name: rc.nocontext
output_type: generate_until
training_split: train
validation_split: validation
doc_to_text: "Question: {{question}}?\nAnswer:"
doc_to_target: "{{answer.aliases}}"
generation_kwargs:
  until:
    - "\n"
    - "."
    - ","
  do_sample: false
  temperature: 0.0
filter_list:
  - name: remove_whitespace
    filter:
      - function: remove_whitespace
      - function: take_first
target_delimiter: " "
num_fewshot: 5
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
metadata:
  version: 2.0
`,
  squad: String.raw`
# SQuAD v1.1 with the prompt of lm-eval's squadv2 task (Title/Background/Question/Answer), scored
# with the official SQuAD exact match and token F1 (max over the gold answers); 1 shot as in the post.
task: squad
dataset_path: rajpurkar/squad
output_type: generate_until
training_split: train
validation_split: validation
doc_to_text: "Title: {{title}}\n\nBackground: {{context}}\n\nQuestion: {{question}}\n\nAnswer:"
doc_to_target: "{{answers.text}}"
generation_kwargs:
  until:
    - "\n"
num_fewshot: 1
metric_list:
  - metric: squad_exact_match
    aggregation: mean
    higher_is_better: true
  - metric: squad_f1
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
`,
  gsm8k: String.raw`
# lm-eval tasks/gsm8k/gsm8k-cot.yaml (version 3.0): 8 fixed chain-of-thought examples, exact match
# after the strict "The answer is N." and flexible last-number extractions.
task: gsm8k
dataset_path: openai/gsm8k
dataset_name: main
output_type: generate_until
test_split: test
doc_to_text: "Q: {{question}}\nA:"
doc_to_target: "{{answer.split('####')[-1].strip() if answer is defined else target}}"
fewshot_config:
  sampler: first_n
  samples:
  - question: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?
    target: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.
  - question: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?
    target: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.
  - question: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?
    target: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.
  - question: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?
    target: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.
  - question: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?
    target: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.
  - question: There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?
    target: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.
  - question: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?
    target: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.
  - question: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?
    target: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.
filter_list:
- name: strict-match
  filter:
  - function: regex
    regex_pattern: The answer is (\-?[0-9\.\,]+).
  - function: take_first
- name: flexible-extract
  filter:
  - function: regex
    group_select: -1
    regex_pattern: (-?[$0-9.,]{2,})|(-?[0-9]+)
  - function: take_first
generation_kwargs:
  do_sample: false
  until:
  - 'Q:'
  - </s>
  - <|im_end|>
num_fewshot: 8
metric_list:
- metric: exact_match
  aggregation: mean
  higher_is_better: true
  ignore_case: true
  ignore_punctuation: false
  regexes_to_ignore:
  - ','
  - \$
  - '(?s).*#### '
  - \.$
metadata:
  version: 3.0
`,
  drop: String.raw`
# lm-eval tasks/drop/default.yaml (version 3.0) with the post's 3 shots: passage and question joined
# by a space, no target delimiter, generation until ".", em and f1 from drop/utils.py process_results.
# The few-shot target is the first gold answer's spans joined by "," (lm-eval joins its "answer"
# field; herd joins the parsed answer so both the EleutherAI/drop and the answers_spans layouts work).
task: drop
dataset_path: EleutherAI/drop
output_type: generate_until
training_split: train
validation_split: validation
process_docs: !function drop.process_docs
doc_to_text: "{{passage}} {{question}}"
doc_to_target: "{{ answers[0]|join(',') }}"
target_delimiter: ""
process_results: !function drop.process_results
generation_kwargs:
  until:
    - "."
num_fewshot: 3
metric_list:
  - metric: em
    aggregation: mean
    higher_is_better: true
  - metric: f1
    aggregation: mean
    higher_is_better: true
metadata:
  version: 3.0
`,
  wikitext: String.raw`
# lm-eval tasks/wikitext/wikitext.yaml over a local wikitext-2 raw test file: the file is split into
# articles at their " = Title = " headings (lm-eval reads EleutherAI/wikitext_document_level, one
# article per document) and detokenized as lm-eval's wikitext_detokenizer does.
task: wikitext
dataset_path: text
dataset_kwargs:
  data_files:
    test: text/wikitext-2-raw-test.txt
  sample_by: document
output_type: loglikelihood_rolling
test_split: test
process_docs: !function wikitext.articles
doc_to_target: !function wikitext.detokenize
process_results: !function wikitext.process_results
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 2.0
`,
  tinystories: String.raw`
# Perplexity on TinyStories validation stories (one document per blank-line-separated story).
task: tinystories
dataset_path: text
dataset_kwargs:
  data_files:
    test: text/tinystories-valid-head.txt
  sample_by: paragraph
output_type: loglikelihood_rolling
test_split: test
doc_to_target: text
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
`,
};
