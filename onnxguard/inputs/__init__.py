"""Input spaces: what an attack may change, and what it must hold fixed.

* ``box``: a continuous box per float input (today's :class:`onnxguard.oracle.Domain`);
  several float inputs are attacked jointly, as one concatenated vector;
* ``text``: a discrete text space, edited as characters or words (string inputs,
  or token ids through a Hugging Face ``tokenizer.json``);
* ``tokens``: token ids edited in id space, when no tokenizer is available;
* ``fixed``: inputs held at their data values (masks, token type ids, other
  integer inputs), listed in the report.

Each attack declares the spaces it works on (``AttackSpec.spaces``); the scan
picks the checks whose attack fits the model's spaces.
"""

from .spaces import SPACE_KINDS, InputRole, plan_inputs, spaces_of

__all__ = ["SPACE_KINDS", "InputRole", "plan_inputs", "spaces_of"]
