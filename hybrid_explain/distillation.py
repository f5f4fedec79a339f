"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): the network also learns a teacher's class probabilities.

The training loss of each network becomes (1 - weight) * (its cross-entropy on the labels) + weight * T^2 *
KL(teacher_T || student_T), where student_T = softmax(logits / T) and teacher_T = softmax(log p_teacher / T); T^2
keeps the term's gradients the size of the hard term's at any T. With mixup a blended row's teacher target is the
same blend of the two rows' targets, as its labels are. The teacher is only a training target: the checkpoint holds
the network alone, and every explanation explains the network.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Teacher:
    """The teacher's probabilities of the training rows (row i of the data the network trains on), the
    distillation temperature T and the weight of the distillation term."""
    probabilities: torch.Tensor  # (N, K)
    temperature: float
    weight: float

    def to(self, device) -> "Teacher":
        return Teacher(self.probabilities.to(device), self.temperature, self.weight)

    def targets(self, idx: torch.Tensor, mix) -> torch.Tensor:
        """(B, K) tempered teacher probabilities of the rows idx; with mixup (mix = (partner, w)), each row's
        blended as w * its own + (1 - w) * its partner's, as the model blends the rows."""
        own = tempered(self.probabilities[idx.to(self.probabilities.device)], self.temperature)
        if mix is None:
            return own
        partner, weight = mix
        return weight * own + (1 - weight) * own[partner]

    def loss(self, hard_loss: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor, mix) -> torch.Tensor:
        """The blended training loss of one network's batch: the hard loss and the distillation term, weighted."""
        return (1 - self.weight) * hard_loss + self.weight * distillation_loss(logits, self.targets(idx, mix),
                                                                                self.temperature)


def tempered(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log p / T): the teacher's distribution softened (T > 1) or sharpened (T < 1)."""
    return torch.softmax(torch.log(probabilities.clamp_min(1e-12)) / temperature, dim=1)


def distillation_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(target || softmax(student_logits / T)), the mean over the batch's rows; zero exactly when the
    student's tempered distribution is the target."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_student, target, reduction="batchmean")


def baseline_teacher(classifier, X: np.ndarray, y: np.ndarray, lengths, rows: np.ndarray, training, name: str,
                     device) -> tuple[Teacher, dict]:
    """(the Teacher of the training rows `rows`, the checkpoint's record of how the network was taught): the
    fitted baseline's out-of-fold probabilities (baseline.teacher_probabilities) with `training`'s (a
    TrainingConfig) temperature and weight. The script and the estimator both teach through here."""
    from hybrid_explain import baseline

    found = baseline.teacher_probabilities(classifier, X, y, lengths, rows, training.seed)
    teacher = Teacher(torch.tensor(found["probabilities"], dtype=torch.float32, device=device),
                      training.distill_temperature, training.distill_weight)
    record = {"teacher": name, "temperature": training.distill_temperature, "weight": training.distill_weight,
              "teacher_probabilities": f"out of fold: {found['folds']} stratified folds of the training rows, a ridge "
                                       "fitted on the other folds' MiniRocket features, its scores calibrated by "
                                       "temperature scaling",
              "calibration_temperature": found["calibration_temperature"],
              "teacher_out_of_fold_accuracy": found["out_of_fold_accuracy"]}
    return teacher, record


def broadcast_teacher(teacher: Teacher | None, shape: tuple[int, int], temperature: float, weight: float,
                      distributed, device) -> Teacher:
    """Rank 0's teacher on every torchrun process: its probabilities (rows x classes) are computed once, on rank 0
    (teacher; None on the others), and sent to the others, so that every process learns the same targets."""
    probabilities = (teacher.probabilities.to(device).contiguous() if teacher is not None
                     else torch.empty(shape, dtype=torch.float32, device=device))
    distributed.broadcast(probabilities, src=0)
    return Teacher(probabilities, temperature, weight)
