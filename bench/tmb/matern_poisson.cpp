// Poisson counts on a lattice with a latent SPDE Matérn field x ~ N(0, Q(θ)⁻¹),
// Q(θ) = τ(κ⁴ C + 2κ² G + G C⁻¹ G) with θ = (log practical range, log marginal sd),
// κ = sqrt(8) / range, τ = 1 / (4π κ² sd²) (gmrf_core's models.Matern2D; S0, S1, S2 are
// its C, G and G C⁻¹ G), log E y_i = β + x_i, β ~ N(0, 1 / fixed_precision). x and β are
// the random effects: obj$fn is TMB's Laplace approximation of −log p(y | θ), as
// gmrf_core's objective. log|Q| goes through density::GMRF, as in TMB's SPDE examples.
#include <TMB.hpp>

template <class Type>
Type objective_function<Type>::operator()()
{
  DATA_VECTOR(y);
  DATA_SPARSE_MATRIX(S0);
  DATA_SPARSE_MATRIX(S1);
  DATA_SPARSE_MATRIX(S2);
  DATA_SCALAR(fixed_precision);
  PARAMETER_VECTOR(x);
  PARAMETER(beta);
  PARAMETER_VECTOR(theta);

  Type kappa = sqrt(Type(8.0)) * exp(-theta(0));
  Type kappa2 = kappa * kappa;
  Type tau = exp(-2.0 * theta(1)) / (Type(4.0 * M_PI) * kappa2);
  Eigen::SparseMatrix<Type> Q = (tau * kappa2 * kappa2) * S0 + (2.0 * tau * kappa2) * S1
                                + tau * S2;
  Type nll = density::GMRF(Q)(x);  // −log N(x; 0, Q⁻¹), every constant
  nll -= dnorm(beta, Type(0), Type(1) / sqrt(fixed_precision), true);
  vector<Type> mean = exp(x + beta);
  nll -= dpois(y, mean, true).sum();
  return nll;
}
