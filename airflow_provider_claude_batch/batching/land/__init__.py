"""Results landed as Parquet: raw results, resubmission rounds, parts checked against requests, partitions swapped in whole, and the landing's steps. The top of the core."""
