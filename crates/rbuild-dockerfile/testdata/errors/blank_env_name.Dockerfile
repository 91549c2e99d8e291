FROM a
ENV =x
