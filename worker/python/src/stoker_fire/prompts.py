"""What the student and the teacher see, as LLaVA conversation messages (docs/fire.md,
section 2). Self-play builds its prompts here, and the training views (a later issue's data
tooling) must use the same functions, so that a model is prompted at generation time
exactly as it was trained.

    student_messages("What color is the bus?", ["Thought: ...\nAnswer: red"], ["Look at the roof."])
      -> [{"from": "human", "value": "<image>\nWhat color is the bus?"},
          {"from": "gpt", "value": "Thought: ...\nAnswer: red"},
          {"from": "human", "value": "Look at the roof."}]
    teacher_messages("What color is the bus?", "Blue.", "Thought: ...\nAnswer: red")
      -> [{"from": "human", "value": "Question: What color is the bus?\nGroundtruth: Blue."},
          {"from": "human", "value": TEACHER_INSTRUCTION},
          {"from": "human", "value": "Thought: ...\nAnswer: red"}]

A message list handed to a model ends with a human message: the model writes the next
gpt turn. Feedback given to the student is the teacher's feedback text only (the score is
stripped: parsing.feedback_text). The teacher view carries no `<image>` (docs/fire.md,
section 2: the teacher sees the question, the ground truth, its instruction and the
answer); pass with_image=True to give it the image as well.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["IMAGE_TOKEN", "TEACHER_INSTRUCTION", "human", "gpt", "student_messages", "teacher_messages"]

IMAGE_TOKEN = "<image>"

# Our wording of FIRE's scoring instruction (the reference prompt text was not available).
TEACHER_INSTRUCTION = (
    "You are a teacher grading a student's answer to the question above about an image. "
    "Compare the answer with the ground truth for accuracy, relevance, helpfulness and level of detail. "
    "Reply in two parts: first a line `Score: N.` with an integer N from 1 to 10, "
    "then `Feedback:` followed by advice that helps the student improve the answer. "
    "Never reveal the ground truth."
)


def human(value: str) -> dict[str, str]:
    return {"from": "human", "value": value}


def gpt(value: str) -> dict[str, str]:
    return {"from": "gpt", "value": value}


def student_messages(
    question: str, responses: Sequence[str], feedbacks: Sequence[str], *, with_image: bool = True
) -> list[dict[str, str]]:
    """The student's view of a dialogue whose next turn is a student response.

    responses[i] answered round i + 1 and feedbacks[i] is the feedback text on it, so
    len(feedbacks) == len(responses) (the prompt ends with the latest feedback).
    """
    if len(feedbacks) != len(responses):
        raise ValueError(f"the student answers after feedback: {len(responses)} responses but {len(feedbacks)} feedbacks")
    first = f"{IMAGE_TOKEN}\n{question}" if with_image else question
    messages = [human(first)]
    for response, feedback in zip(responses, feedbacks):
        messages.append(gpt(response))
        messages.append(human(feedback))
    return messages


def teacher_messages(question: str, groundtruth: str, answer: str, *, with_image: bool = False) -> list[dict[str, str]]:
    """The teacher's view: question and ground truth, its instruction, the latest answer only."""
    head = f"Question: {question}\nGroundtruth: {groundtruth}"
    if with_image:
        head = f"{IMAGE_TOKEN}\n{head}"
    return [human(head), human(TEACHER_INSTRUCTION), human(answer)]
