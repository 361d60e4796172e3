"""How good is a generator: the expression classifier (the judge) and its training, the
metrics, scoring G on real faces, the evaluate mode, and how strongly G should edit (the
calibrate mode; gain_search for factors chosen together to meet aims).

Floor 4: may import serving/ and everything below it.
"""
