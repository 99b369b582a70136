"""``python -m r1lit.cli fit …``: the ``r1lit`` command where r1lit is on the path but not installed (a copied
checkout); Lightning relaunches extra ranks with the same ``-m``."""

from r1lit.cli import main

main()
