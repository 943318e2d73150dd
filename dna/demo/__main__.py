"""
C{python -m dna.demo}: the same as the C{dna-demo} console script.
"""

from dna.demo.scenario import main

main()
