"""Per-token disagreement of a student with its teacher, on tiny real models."""

from __future__ import annotations

import pytest
import tiny_models

from distill_gui.core.token_disagreement import DisagreementError, hardest_tokens, score_answer


@pytest.fixture(scope="module")
def models(tiny_tokenizer):
    teacher = tiny_models.build_llama(tiny_tokenizer, seed=0).eval()
    student = tiny_models.build_llama(tiny_tokenizer, seed=1).eval()
    return tiny_tokenizer, teacher, student


def test_a_model_agrees_with_itself_everywhere(models):
    tokenizer, teacher, _ = models
    scores = score_answer(teacher, teacher, tokenizer, "What is 2 plus 3?", " 5, it is 5")
    assert len(scores) == len(tokenizer(" 5, it is 5", add_special_tokens=False)["input_ids"])
    assert "".join(s.text for s in scores).strip() == "5, it is 5"
    assert all(s.kl == pytest.approx(0.0, abs=1e-5) for s in scores)
    for s in scores:  # the teacher's probability of its own first choice is its top probability
        assert s.student_choice == s.teacher_top[0][0]
        assert s.teacher_p_student_choice == pytest.approx(s.teacher_top[0][1], rel=1e-5)
        assert len(s.teacher_top) == 5 and s.teacher_top[0][1] >= s.teacher_top[-1][1]


def test_a_different_student_disagrees_and_the_hardest_tokens_rank_by_kl(models):
    import torch

    tokenizer, teacher, student = models
    prompt, answer = "What is 2 plus 3?", " 5, it is 5"
    scores = score_answer(teacher, student, tokenizer, prompt, answer)
    assert all(s.kl > 0 for s in scores)
    # The first answer token's KL computed by hand.
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        t = torch.log_softmax(teacher(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
        s = torch.log_softmax(student(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    assert scores[0].kl == pytest.approx(float((t.exp() * (t - s)).sum()), rel=1e-4)
    ranked = hardest_tokens([scores, scores[:2]])
    assert [r[1] for r in ranked] == sorted((r[1] for r in ranked), reverse=True)
    assert sum(r[2] for r in ranked) == len(scores) + 2


def test_different_tokenizers_are_refused_in_words(models):
    tokenizer, teacher, student = models
    other = tiny_models.build_tokenizer(vocab_size=280, digits=False)
    with pytest.raises(DisagreementError, match="tokenize differently"):
        score_answer(teacher, student, tokenizer, "p", " a", student_tokenizer=other)
