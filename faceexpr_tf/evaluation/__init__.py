"""How good is a generator: the expression classifier (the judge) and its training, the
metrics, scoring G on real faces, and the evaluate mode.

Floor 4: may import serving/ and everything below it.
"""
