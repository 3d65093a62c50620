/* distill_internal.h (internal to the pipeline): what distill.c and distill_cache.c share:
 * the token shards of the data built beside an output path before anything is published,
 * and the data fingerprint a cache and its students agree on. */
#ifndef THERMO_PIPELINE_DISTILL_INTERNAL_H
#define THERMO_PIPELINE_DISTILL_INTERNAL_H

#include "thermo/pipeline.h"

/* Shards of the data (text files, directories, or one shard as given) in a fresh directory
 * "<beside>.tmp-XXXXXX" (tmp_dir, removed by distill_shards_discard), or the shard itself
 * when data is one shard (tmp_dir ""). n_data 0: the embedded corpus's first file. */
th_status distill_shards_build(const th_tokenizer *tok, const char *const *data, size_t n_data, const char *beside,
                               char *tmp_dir, size_t cap, char *train_path, char *val_path, size_t path_cap);
/* Removes the temporary shards and their directory (a no-op for tmp_dir ""). */
void distill_shards_discard(const char *tmp_dir, const char *train_path, const char *val_path);

/* XXH64 of the shard file's bytes. */
th_status distill_data_fingerprint(const char *shard, uint64_t *fp);

/* mkdir -p. */
th_status distill_mkdir_p(const char *dir);

#endif
