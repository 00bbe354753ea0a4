"""The statistics behind `engine report`, pure (arrays in, numbers out, no I/O):

- `estimators`: pass@k per problem, its bootstrap interval and analytic standard error;
- `fits`: four models of the pass@k curve, their intervals and extrapolations;
- `backtest`: how well each model, fitted on the first M samples, predicts pass@n.

Loading a run (`load`), the per-problem table (`table`), figures (`plots`) and the HTML page
(`html`) sit beside them and do the I/O.
"""
