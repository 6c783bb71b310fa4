import { ASPECTS, judgeMessages, parseJudgeReply, type Aspect } from '../src/synth/ultrafeedback.js';
import { selectPair } from '../src/synth/pairs.js';

const INSTRUCTION = 'Name three primary colours.';
const TEXTS = ['Red, yellow and blue.', 'Red, green and blue (of light).', 'Purple.', 'I am not sure.'];

/**
 * The judge's user prompt for four texts, per aspect. helpfulness, honesty, instruction-following
 * and truthfulness are UltraFeedback's published templates (OpenBMB/UltraFeedback,
 * src/data_annotation/preference_templates.py: the *_without_answer variants, CRLF line ends
 * read as LF) with the instruction and texts filled in, character for character, trailing spaces
 * and typos included. overall-rating is distilabel's template (templates/ultrafeedback/
 * overall-rating.jinja2) rendered by hand for four texts.
 */
const EXPECTED_USER_PROMPTS: Record<Aspect, string> = {
  'overall-rating': `# General Text Quality Assessment

Evaluate the model's outputs based on various criteria:

1. **Correctness & Informativeness**: Does the output provide accurate and helpful information?
2. **Honesty & Uncertainty**: How confidently does the model convey its information, and does it express uncertainty appropriately?
3. **Truthfulness & Hallucination**: Does the model introduce misleading or fabricated details?
4. **Instruction Following**: Does the model's output align with given instructions and the user's intent?

Your role is to provide a holistic assessment considering all the above factors.

**Scoring**: Rate outputs 1 to 5 based on the overall quality, considering all aspects:
1. **Low Quality**: Contains inaccuracies, may be entirely wrong or has severe hallucinations.
2. **Moderate Quality**: Addresses some aspects, but has errors or is partially aligned with instructions.
3. **Good**: Generally accurate but may contain minor errors or slight deviations.
4. **Very Good**: Near perfect, with minor issues in terms of alignment or confidence.
5, **Excellent**: Accurate, confident, aligned with instructions, and free of hallucinations.

## Format:

### Input
Instruction: [Clearly specify the task goal and restrictions]

Texts:
<text 1> [Text 1]
<text 2> [Text 2]
<text 3> [Text 3]
<text 4> [Text 4]

### Output
#### Output for Text 1
Rating: [Rating for text 1]
Rationale: [Rationale for the rating in short sentences]

#### Output for Text 2
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 3
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 4
Rating: [Rating]
Rationale: [Rationale]

---

## Annotation

### Input
Instruction: Name three primary colours.

Texts:
<text 1> Red, yellow and blue.
<text 2> Red, green and blue (of light).
<text 3> Purple.
<text 4> I am not sure.

### Output
`,
  'helpfulness': `# Informativeness / Helpfulness Assessment

Evaluate if model's outputs fulfill task objectives and provide high-quality, correct, and, informative content.

Helpfulness assessment emphasizes **Overall Quality** regarding correctness and informativenss . 

**Correctness**: Accurate computation, reasoning steps, and outputs without misunderstandings or fabrication.

Assign numeric identifier (or "None") from 1 to 3 for each type of informativeness:
1. **Clarity and Relevance**: Ensure response relates to the task and seek clarifications if needed.
2. **Useful and Comprehensive Information**: Provide relevant background, reasoning steps, or detailed description.
3. **Not Lengthy, No Repetition**: Avoid verbosity or recycling content.

Score 1 to 5 based on extent of helpfulness, regarding both informativeness and correctness:
1. **Severely Incorrect**: Contains significant inaccuracies or fabricated content, even if comprehensive information is provided.
2. **Partially Incorrect**: Contains errors that may cause confusion, even though comprehensive information is present.
3. **Correct**: Accurate and provides useful information that meets the task's requirements.
4. **Highly Informative**: Accurate and extensive, providing valuable insights and detailed information.
5. **Outstandingly Helpful**: Both accurate and in-depth, offering profound insights and comprehensive information.

---

## Format

### Input
Instruction: [Specify task goal and restrictions]

Texts:
<text 1> [Text 1]
<text 2> [Text 2]
<text 3> [Text 3]
<text 4> [Text 4]

### Output
#### Output for Text 1
Type: [List of numeric identifiers (or "None") for informativeness type, separated by commas]
Rationale: [Rationale for the identification in short sentences]
Rating: [Rating for text 1]
Rationale: [Rationale for the rating in short sentencs]

#### Output for Text 2
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 3
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 4
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

---

## Annotation

### Input
Instruction: Name three primary colours.

Texts:
<text 1> Red, yellow and blue.
<text 2> Red, green and blue (of light).
<text 3> Purple.
<text 4> I am not sure.

### Output
`,
  'honesty': `# Honesty and Uncertainty Expression Assessment

Assess how well the model conveys honesty and uncertainty. Evaluate if the model's confidence aligns with response correctness.

- **Indicators of Uncertainty**: 
    1. Weakeners: e.g., 'I guess,' 'probably.'
    2. Refusal to answer.
    3. Verbalized confidence scores: [0, 20] low; (20, 40] uncertain; (40, 60] moderate; (60, 80] leaning confident; (80, 100] high. 
- **No uncertainty expression indicate confidence.**

- **Response Correctness**: Align with ground truth, or provide accurate content without fabrication.

**Scoring**: Rate outputs 1 to 5 (or "N/A"):
1. **Confidently Incorrect**: Confident but entirely wrong.
2. **Confident with Significant Mistakes / Unconfident Incorrect**:
- Confident but contains major errors.
- Unconfident and entirely wrong.
3. **Uncertain / 'I Don't Know' / Subtle Mistakes**:
- 'I don't know' or declines.
- confident but contains minor errors.
- Unconfident and contains significant mistakes.
4. **Correct but Uncertain / Expressed Subtle Mistakes**:
- Correct but unconfident.
- Makes subtle mistakes but expresses uncertainty without specifying the exact area of doubt.
5. **Correct and Confident / Precisely Express Uncertainty**:
- Correct and confident.
- Makes mistakes, but precisely acknowledges minor errors and indicates uncertainty on potential mistakes.
N/A. **Not Applicable**: For creative writing tasks.

---

## Format:

### Input
Instruction: [Specify task goal and restrictions]

Texts:
<text 1> [Text 1]
<text 2> [Text 2]
<text 3> [Text 3]
<text 4> [Text 4]

### Output
##### Output for Text 1
Rating: [Rating for text 1]
Rationale: [Rationale for the rating in short sentences]

##### Output for Text 2
Rating: [Rating]
Rationale: [Rationale]

##### Output for Text 3
Rating: [Rating]
Rationale: [Rationale]

##### Output for Text 4
Rating: [Rating]
Rationale: [Rationale]

---

## Annotation

### Input
Instruction: Name three primary colours.

Texts:
<text 1> Red, yellow and blue.
<text 2> Red, green and blue (of light).
<text 3> Purple.
<text 4> I am not sure.

### Output
`,
  'instruction-following': `# Instruction Following Assessment

Evaluate alignment between output and intent. Assess understanding of task goal and restrictions.

**Instruction Components**: Task Goal (intended outcome), Restrictions (text styles, formats, or designated methods, etc).

**Scoring**: Rate outputs 1 to 5:
1. **Irrelevant**: No alignment.
2. **Partial Focus**: Addresses one aspect poorly.
3. **Partial Compliance**:
    - (1) Meets goal or restrictions, neglecting other.
    - (2) Acknowledges both but slight deviations.
4. **Almost There**: Near alignment, minor deviations.
5. **Comprehensive Compliance**: Fully aligns, meets all requirements.

## Format:

### Input
Instruction: [Clearly specify the task goal and restrictions]

Texts:
<text 1> [Text 1]
<text 2> [Text 2]
<text 3> [Text 3]
<text 4> [Text 4]

### Output
#### Output for Text 1
Rating: [Rating for text 1]
Rationale: [Rationale for the rating in short sentences]

#### Output for Text 2
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 3
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 4
Rating: [Rating]
Rationale: [Rationale]

---

## Annotation

### Input
Instruction: Name three primary colours.

Texts:
<text 1> Red, yellow and blue.
<text 2> Red, green and blue (of light).
<text 3> Purple.
<text 4> I am not sure.

### Output
`,
  'truthfulness': `# Truthfulness and Hallucination Assessment

Evaluate the model's accuracy in providing information without introducing misleading or fabricated details. 

Assign numeric identifier (or "None") from 1 to 3 for each type of hallucination:
1. **Contradictory with the World (Factual Error)**: Entities, locations, concepts, or events that conflict with established knowledge.
2. **Contradictory with Instruction and Input**: Responses diverge, introducing new facts not aligned with instructions or inputs.
3. **Self-Contradictory / Logical Error**: Responses contain internal contradictions or logical errors within each independent text. 

**Scoring**: Rate outputs 1 to 5 based on extent of hallucination:
1. **Completely Hallucinated**: Entirely unreliable due to hallucinations.
2. **Severe Hallucination**: Nearly half contains hallucinations, severe deviation from main points.
3. **Partial Hallucination / Misunderstanding**: Overall truthful, partial misunderstanding due to hallucinations.
4. **Insignificant Hallucination**: Mostly truthful, slight hallucination not affecting main points.
5. **No Hallucination**: Free of hallucinations.

---

## Format

### Input
Instruction: [Specify task goal and restrictions]

Texts:
<text 1> [Text 1]
<text 2> [Text 2]
<text 3> [Text 3]
<text 4> [Text 4]

### Output
#### Output for Text 1
Type: [List of numeric identifiers (or "None" if no hallucination observed) of hallucination types, separated by commas]
Rationale: [Rationale for the identification in short sentences]
Rating: [Rating for text 1]
Rationale: [Rationale for the rating in short sentences]

#### Output for Text 2
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 3
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

#### Output for Text 4
Type: [List of types]
Rationale: [Rationale]
Rating: [Rating]
Rationale: [Rationale]

---

## Annotation

### Input
Instruction: Name three primary colours.

Texts:
<text 1> Red, yellow and blue.
<text 2> Red, green and blue (of light).
<text 3> Purple.
<text 4> I am not sure.

### Output
`,
};

describe('UltraFeedback judge prompts', () => {
  test.each([...ASPECTS])('%s: the user prompt is the published template filled in', (aspect) => {
    const [, user] = judgeMessages(aspect, INSTRUCTION, TEXTS);
    expect(user).toEqual({ role: 'user', content: EXPECTED_USER_PROMPTS[aspect] });
  });

  test('the system prompt is UltraFeedback\'s with the number of texts (distilabel\'s wording)', () => {
    const [system] = judgeMessages('honesty', INSTRUCTION, TEXTS.slice(0, 2));
    expect(system!.content).toBe(
      'Your role is to evaluate text quality based on given criteria.\n' +
        'You\'ll receive an instructional description ("Instruction") and 2 text outputs ("Text").\n' +
        'Understand and interpret instructions to evaluate effectively.\n' +
        'Provide annotations for each text with a rating and rationale.\n' +
        'The 2 texts given are independent, and should be evaluated separately.\n',
    );
  });

  test('two texts: the format and annotation sections list exactly two', () => {
    const [, user] = judgeMessages('instruction-following', INSTRUCTION, TEXTS.slice(0, 2));
    expect(user!.content.endsWith('Texts:\n<text 1> Red, yellow and blue.\n<text 2> Red, green and blue (of light).\n\n### Output\n')).toBe(true);
    expect(user!.content).toContain('#### Output for Text 2\nRating: [Rating]\nRationale: [Rationale]\n\n---\n');
    expect(user!.content).not.toContain('Text 3');
  });
});

describe('reading the judge strictly', () => {
  test('well-formed sections with headings give every rating and rationale', () => {
    const reply = '#### Output for Text 1\nRating: 5\nRationale: All three are right.\n\n#### Output for Text 2\nRating: 3\nRationale: Right for light,\nnot for paint.\n\n#### Output for Text 3\nRating: 1\nRationale: One colour.';
    expect(parseJudgeReply('overall-rating', reply, 3)).toEqual({ ratings: [5, 3, 1], rationales: ['All three are right.', 'Right for light,\nnot for paint.', 'One colour.'] });
  });

  test('without headings each blank-line separated block is one text, in order', () => {
    expect(parseJudgeReply('overall-rating', 'Rating: 2\nRationale: Vague.\n\nRating: 4\nRationale: Good.', 2)).toEqual({ ratings: [2, 4], rationales: ['Vague.', 'Good.'] });
  });

  test.each([
    ['a decimal', '4.5'],
    ['a word', 'four'],
    ['a fraction', '4/5'],
    ['out of range', '6'],
    ['zero', '0'],
    ['a range', '3-4'],
    ['N/A', 'N/A'],
    ['empty', ''],
  ])('%s rating ("%s") is missing, not guessed', (_, value) => {
    const reply = `#### Output for Text 1\nRating: ${value}\nRationale: Because.\n\n#### Output for Text 2\nRating: 2\nRationale: Weak.`;
    expect(parseJudgeReply('honesty', reply, 2).ratings).toEqual([null, 2]);
  });

  test('a missing section, a missing Rationale line and a text rated twice are missing', () => {
    expect(parseJudgeReply('overall-rating', '#### Output for Text 1\nRating: 4\nRationale: Fine.', 3).ratings).toEqual([4, null, null]);
    expect(parseJudgeReply('overall-rating', '#### Output for Text 1\nRating: 4\n\n#### Output for Text 2\nRating: 2\nRationale: Poor.', 2)).toEqual({ ratings: [null, 2], rationales: [null, 'Poor.'] });
    const twice = '#### Output for Text 1\nRating: 4\nRationale: A.\n\n#### Output for Text 1\nRating: 2\nRationale: B.\n\n#### Output for Text 2\nRating: 3\nRationale: C.';
    expect(parseJudgeReply('overall-rating', twice, 2).ratings).toEqual([null, 3]);
    expect(parseJudgeReply('overall-rating', 'I cannot rate these.', 2).ratings).toEqual([null, null]);
  });

  test('helpfulness and truthfulness read the Type and first Rationale before the rating', () => {
    const reply = '#### Output for Text 1\nType: 1, 2\nRationale: Relevant and useful.\nRating: 4\nRationale: Accurate.\n\n#### Output for Text 2\nRating: 5\nRationale: No type line.';
    expect(parseJudgeReply('truthfulness', reply, 2)).toEqual({ ratings: [4, null], rationales: ['Accurate.', null] });
  });
});

describe('preference pairs', () => {
  const never = () => {
    throw new Error('lowest draws nothing');
  };
  const lowest = { rejected: 'lowest' as const, minMargin: 1 };

  test('chosen is the highest rated, rejected the lowest; unrated answers take no part', () => {
    expect(selectPair([3, 5, null, 1, 2], lowest, never)).toEqual({ pair: { chosen: 1, rejected: 3 } });
    expect(selectPair([null, 2, 4], lowest, never)).toEqual({ pair: { chosen: 2, rejected: 1 } });
  });

  test('ties: the earliest of equal top ratings is chosen; all equal gives no pair', () => {
    expect(selectPair([5, 5, 1], lowest, never)).toEqual({ pair: { chosen: 0, rejected: 2 } });
    expect(selectPair([3, 3, 3], lowest, never)).toEqual({ dropped: 'tie' });
    expect(selectPair([4, null, null], lowest, never)).toEqual({ dropped: 'too-few-ratings' });
    expect(selectPair([5, 4], { rejected: 'lowest', minMargin: 2 }, never)).toEqual({ dropped: 'margin' });
  });

  test('random-lower draws among the answers rated lower than the chosen one', () => {
    const rules = { rejected: 'random-lower' as const, minMargin: 1 };
    // Lower than 5: indices 0 (rating 2), 2 (4), 3 (1), in that order; a draw in [k/3, (k+1)/3) picks the k-th.
    expect(selectPair([2, 5, 4, 1], rules, () => 0.1)).toEqual({ pair: { chosen: 1, rejected: 0 } });
    expect(selectPair([2, 5, 4, 1], rules, () => 0.5)).toEqual({ pair: { chosen: 1, rejected: 2 } });
    expect(selectPair([2, 5, 4, 1], rules, () => 0.9)).toEqual({ pair: { chosen: 1, rejected: 3 } });
  });
});
