# TMB side of bench/compare_tmb.py: builds <template>.cpp with framework = "TMBad", one
# MakeADFun per lattice (x and beta random; the structure matrices S0, S1, ... of the data
# directory as data), then answers "run <m> <first> <count>" lines on stdin with one
# "ev <fn seconds> <gr seconds> <fn> <gr...>" line per point of the θ path and a final "done".
# Usage: Rscript driver.R <data dir> <build dir> <template> <m> [<m> ...]
args <- commandArgs(trailingOnly = TRUE)
data_dir <- args[1]
build_dir <- args[2]
template <- args[3]
sizes <- as.integer(args[-(1:3)])
suppressMessages(library(TMB))

source_cpp <- file.path(build_dir, paste0(template, ".cpp"))
library_file <- TMB::dynlib(file.path(build_dir, template))
if (!file.exists(library_file) || file.mtime(library_file) < file.mtime(source_cpp)) {
  TMB::compile(source_cpp, framework = "TMBad")
}
dyn.load(library_file)
TMB::openmp(1, DLL = template)

read_doubles <- function(name, count) {
  con <- file(file.path(data_dir, name), "rb")
  on.exit(close(con))
  readBin(con, "double", count, size = 8, endian = "little")
}
read_ints <- function(name, count) {
  con <- file(file.path(data_dir, name), "rb")
  on.exit(close(con))
  readBin(con, "integer", count, size = 4, endian = "little")
}
read_sparse <- function(m, k, n) {
  nnz <- scan(file.path(data_dir, sprintf("S%d_%d.nnz", k, m)), quiet = TRUE)
  i <- read_ints(sprintf("S%d_%d.i", k, m), nnz)
  j <- read_ints(sprintf("S%d_%d.j", k, m), nnz)
  x <- read_doubles(sprintf("S%d_%d.x", k, m), nnz)
  Matrix::sparseMatrix(i = i + 1L, j = j + 1L, x = x, dims = c(n, n))
}

objects <- list()
paths <- list()
for (m in sizes) {
  n <- scan(file.path(data_dir, sprintf("n_%d", m)), quiet = TRUE)
  meta <- scan(file.path(data_dir, sprintf("path_%d.shape", m)), quiet = TRUE)
  path <- matrix(read_doubles(sprintf("path_%d", m), meta[1] * meta[2]),
                 nrow = meta[1], byrow = TRUE)
  data <- list(y = read_doubles(sprintf("y_%d", m), n), fixed_precision = 1e-3)
  structures <- scan(file.path(data_dir, sprintf("structures_%d", m)), quiet = TRUE)
  for (k in seq_len(structures) - 1L) data[[sprintf("S%d", k)]] <- read_sparse(m, k, n)
  t0 <- Sys.time()
  obj <- TMB::MakeADFun(data, list(x = rep(0, n), beta = 0, theta = path[1, ]),
                        random = c("x", "beta"), DLL = template, silent = TRUE)
  obj$fn(path[1, ])
  obj$gr(path[1, ])
  cat(sprintf("setup %d %.3f\n", m, as.numeric(Sys.time() - t0, units = "secs")))
  objects[[as.character(m)]] <- obj
  paths[[as.character(m)]] <- path
}
cat("ready\n")
flush(stdout())

con <- file("stdin")
open(con)
repeat {
  line <- readLines(con, n = 1)
  if (length(line) == 0) break
  parts <- strsplit(line, " ")[[1]]
  if (parts[1] != "run") break
  key <- parts[2]
  obj <- objects[[key]]
  path <- paths[[key]]
  first <- as.integer(parts[3])
  for (row in first + seq_len(as.integer(parts[4]))) {
    theta <- path[row, ]
    t0 <- Sys.time()
    value <- obj$fn(theta)
    t1 <- Sys.time()
    grad <- obj$gr(theta)
    t2 <- Sys.time()
    seconds <- as.numeric(c(t1 - t0, t2 - t1), units = "secs")
    cat("ev", sprintf("%.6f", seconds), sprintf("%.17g", c(value, grad)), "\n")
  }
  cat("done\n")
  flush(stdout())
}
