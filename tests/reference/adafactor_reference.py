#!/work/venv/bin/python
"""Golden Adafactor trajectory from transformers for tests/test_kernels_adafactor.cpp.

transformers 5.23.0, torch 2.15.0 (CPU). `vktune train --optim adafactor` is HF's
TrainingArguments(optim="adafactor"): Trainer builds transformers.optimization.Adafactor with
scale_parameter=False, relative_step=False (trainer_optimizer._get_adafactor), warmup_init False
(the default), lr = learning_rate, and the constructor's defaults for the rest: eps (1e-30, 1e-3),
clip_threshold 1.0, decay_rate -0.8, beta1 None (no first moment). Its weight decay comes from
the Trainer's two param groups (decayed, and norms/biases at 0). Before each step the Trainer
clips the global gradient norm (max_grad_norm 1.0).

Tensors: a 2-D (factored: row and column accumulators) 5x24, a 1-D 17 (unfactored second moment)
in the no-decay group, and a 2-D 24x3. 20 steps with given gradients of varying scale and a
changing lr; every step's parameters are written to tests/data/adafactor_reference.json.

Usage: /work/venv/bin/python tests/reference/adafactor_reference.py
"""
import torch
import transformers
from optim_reference import floats, short, write_reference  # this folder: fp32-exact decimals, the JSON writer
from transformers.optimization import Adafactor

assert transformers.__version__ == "5.23.0", transformers.__version__

FORMAT = "vktune-adafactor-reference"
VERSION = 1
SHAPES = [[5, 24], [17], [24, 3]]
STEPS = 20
LEARNING_RATES = [0.01 * (1 + (s % 5)) / 3 for s in range(STEPS)]
GRAD_SCALES = [0.3, 0.01, 0.1, 2.0, 0.05] * 4  # some steps clip (norm > 1), others not
WEIGHT_DECAY = 0.1
MAX_NORM = 1.0


def main():
    torch.manual_seed(2024)
    initial = [torch.randn(*shape, dtype=torch.float32) for shape in SHAPES]
    grads = [[torch.randn(*shape, dtype=torch.float32) * GRAD_SCALES[s] for shape in SHAPES] for s in range(STEPS)]
    grads[3][0][1, 2] = 0.0  # an exact zero gradient element
    params = [torch.nn.Parameter(t.clone()) for t in initial]
    groups = [dict(params=[params[0], params[2]], weight_decay=WEIGHT_DECAY), dict(params=[params[1]], weight_decay=0.0)]
    optimizer = Adafactor(groups, lr=LEARNING_RATES[0], scale_parameter=False, relative_step=False)
    defaults = {k: optimizer.defaults[k] for k in ("eps", "clip_threshold", "decay_rate", "beta1", "warmup_init")}
    assert defaults == dict(eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None, warmup_init=False)
    norms, trajectory = [], []
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATES[step]
        for param, grad in zip(params, grads[step]):
            param.grad = grad.clone()
        norms.append(short(torch.nn.utils.clip_grad_norm_(params, MAX_NORM)))
        optimizer.step()
        trajectory.append([floats(p) for p in params])
    result = dict(
        format=FORMAT,
        version=VERSION,
        transformers=transformers.__version__,
        torch=torch.__version__,
        shapes=SHAPES,
        steps=STEPS,
        learning_rates=LEARNING_RATES,
        decay_scales=[1.0, 0.0, 1.0],
        weight_decay=WEIGHT_DECAY,
        max_norm=MAX_NORM,
        initial_params=[floats(t) for t in initial],
        grads=[[floats(g) for g in step] for step in grads],
        grad_norms=norms,
        params=trajectory,
    )
    write_reference("adafactor_reference.json", result)


if __name__ == "__main__":
    main()
