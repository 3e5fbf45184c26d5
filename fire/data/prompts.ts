/**
 * What the student and the teacher see, as LLaVA conversation messages: the TypeScript
 * twin of worker/python/src/stoker_fire/prompts.py (self-play prompts the models with that module;
 * training views are built here with the same functions, so a model is prompted at
 * generation time exactly as it was trained). test/fixtures/fire-views-vectors.json pins
 * both sides (test/unit/fire-data-views.test.ts and
 * worker/python/tests/test_fire_views_vectors.py).
 *
 *   studentMessages('What color is the bus?', ['Thought: ...\nAnswer: red'], ['Look at the roof.'])
 *     -> [human('<image>\nWhat color is the bus?'), gpt('Thought: ...\nAnswer: red'),
 *         human('Look at the roof.')]
 *   teacherMessages('What color is the bus?', 'Blue.', 'Thought: ...\nAnswer: red')
 *     -> [human('Question: What color is the bus?\nGroundtruth: Blue.'),
 *         human(TEACHER_INSTRUCTION), human('Thought: ...\nAnswer: red')]
 */

export const IMAGE_TOKEN = '<image>';

/** Word for word prompts.TEACHER_INSTRUCTION (our wording of FIRE's scoring instruction). */
export const TEACHER_INSTRUCTION =
  "You are a teacher grading a student's answer to the question above about an image. " +
  'Compare the answer with the ground truth for accuracy, relevance, helpfulness and level of detail. ' +
  'Reply in two parts: first a line `Score: N.` with an integer N from 1 to 10, ' +
  'then `Feedback:` followed by advice that helps the student improve the answer. ' +
  'Never reveal the ground truth.';

export interface Message {
  from: 'human' | 'gpt';
  value: string;
}

export const human = (value: string): Message => ({ from: 'human', value });
export const gpt = (value: string): Message => ({ from: 'gpt', value });

/**
 * The student's view of a dialogue whose next turn is a student response: responses[i]
 * answered round i + 1 and feedbacks[i] is the feedback text on it.
 */
export function studentMessages(
  question: string,
  responses: readonly string[],
  feedbacks: readonly string[],
  opts: { withImage?: boolean } = {},
): Message[] {
  if (feedbacks.length !== responses.length)
    throw new RangeError(
      `the student answers after feedback: ${responses.length} responses but ${feedbacks.length} feedbacks`,
    );
  const messages = [human((opts.withImage ?? true) ? `${IMAGE_TOKEN}\n${question}` : question)];
  responses.forEach((response, i) => {
    messages.push(gpt(response), human(feedbacks[i] as string));
  });
  return messages;
}

/** The teacher's view: question and ground truth, its instruction, the latest answer only. */
export function teacherMessages(
  question: string,
  groundtruth: string,
  answer: string,
  opts: { withImage?: boolean } = {},
): Message[] {
  const head = `Question: ${question}\nGroundtruth: ${groundtruth}`;
  return [
    human(opts.withImage ? `${IMAGE_TOKEN}\n${head}` : head),
    human(TEACHER_INSTRUCTION),
    human(answer),
  ];
}
