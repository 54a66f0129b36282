"""`xmsearch eval`: retrieval quality on the user's own judged data. `data` reads an evaluation set
(BEIR or mMARCO layout, or the bundled xmsearch-mini); `runs` indexes its corpus once per way of
building an index and searches every query under each configuration; `scores` computes the measures
(through ir-measures) overall and per language, and compares configurations with a paired test."""
