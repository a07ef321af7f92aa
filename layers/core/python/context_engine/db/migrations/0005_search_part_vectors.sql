-- One vector per utterance besides the turn's: the re-ranker scores each utterance (the
-- question and the answer of a WriteQA turn) by its own cosine with the query
-- (docs/retrieval.md: the recipe). Candidates are still found through the turn vector's
-- HNSW index; these columns are only read for the candidates' rows, so they need no index.
alter table turns
  add column q_embedding vector({{embedding_dim}}),
  add column a_embedding vector({{embedding_dim}});
