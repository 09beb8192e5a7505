// Poisson counts on a lattice with a latent GMRF x ~ N(0, Q(θ)⁻¹),
// Q(θ) = Σ_k exp(θ_k) S_k (the SPDE-type Custom prior of bench/compare_gradient.py),
// log E y_i = β + x_i, β ~ N(0, 1 / fixed_precision). x and β are the random effects:
// obj$fn is TMB's Laplace approximation of −log p(y | θ), as gmrf_core's objective.
#include <TMB.hpp>

template <class Type>
Type objective_function<Type>::operator()()
{
  DATA_VECTOR(y);
  DATA_SPARSE_MATRIX(S0);
  DATA_SPARSE_MATRIX(S1);
  DATA_SCALAR(fixed_precision);
  PARAMETER_VECTOR(x);
  PARAMETER(beta);
  PARAMETER_VECTOR(theta);

  Eigen::SparseMatrix<Type> Q = exp(theta(0)) * S0 + exp(theta(1)) * S1;
  Type nll = density::GMRF(Q)(x);  // −log N(x; 0, Q⁻¹), every constant
  nll -= dnorm(beta, Type(0), Type(1) / sqrt(fixed_precision), true);
  vector<Type> mean = exp(x + beta);
  nll -= dpois(y, mean, true).sum();
  return nll;
}
