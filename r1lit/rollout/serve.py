"""``python -m r1lit.rollout.serve`` keeps working: it runs ``python -m r1lit.rollout.vllm.serve`` (same arguments)."""

import sys

from r1lit.rollout.vllm.serve import main

if __name__ == "__main__":
    main(sys.argv[1:])
