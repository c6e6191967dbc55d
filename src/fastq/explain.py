def explain(layer, x_q, m=0, n=0):
    raise NotImplementedError
