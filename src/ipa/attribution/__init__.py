"""The IPA attribution query in MPC, from generic rows to result shares.

Pipeline (one module per phase):

1. ``rows``: the report collector's presorted, secret-shared generic rows;
2. ``pipeline``: stable oblivious sort by (match key, constraint id);
3. ``boundaries``: group and user boundaries of adjacent rows;
4. ``last_touch``: each trigger's latest source within K−1 rows and the window;
5. ``cap``: each user's contributions capped at ``cap``, earliest first;
6. ``aggregate``: sums per breakdown key by one-hot inner products;
7. a noise hook adds DP noise shares before the result shares leave.

What each helper learns: the number of rows n and the public query
parameters (``QueryConfig``). Every value opened during the protocol is a
uniformly random permutation (the sort's destinations after a shuffle);
everything else is a share. The semantics are exactly ``ipa.reference``.
"""
