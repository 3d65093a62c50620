/* detect.c: th_model_load_any, the CLI's single entry point for "a model file": it
 * looks at what the path is (a directory, or a file's first bytes) and hands it to the
 * matching loader. */
#include "io/io_internal.h"

#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

const char *th_model_format_name(th_model_format f) {
    switch (f) {
    case TH_FORMAT_HF_DIR: return "huggingface-dir";
    case TH_FORMAT_SAFETENSORS: return "safetensors";
    case TH_FORMAT_LLMC: return "llm.c";
    case TH_FORMAT_CHECKPOINT: return "thermo-checkpoint";
    case TH_FORMAT_GGUF: return "gguf";
    case TH_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

static th_status load_checkpoint_info(const char *path, th_gpt2 **out, th_model_info *info) {
    th_train_state st;
    th_gpt2 *m;
    th_status s = th_checkpoint_load(path, &m, &st);
    if (s != TH_OK) return s;
    if (info) {
        memset(info, 0, sizeof *info);
        info->format = TH_FORMAT_CHECKPOINT;
        snprintf(info->dtype, sizeof info->dtype, "F32");
        info->names = TH_NAMES_NONE;
        info->num_tensors = TH_P_NUM;
        info->config = *th_gpt2_get_config(m);
        info->num_params = th_gpt2_num_params(&info->config);
        info->padded_vocab_size = info->config.vocab_size;
        info->train_step = st.step;
        info->adam_steps = th_gpt2_adam_steps(m);
        info->has_moments = th_gpt2_adam_m(m) != NULL;
        snprintf(info->run_meta, sizeof info->run_meta, "%s", st.run_meta);
    }
    *out = m;
    return TH_OK;
}

th_status th_model_load_any(const char *path, th_gpt2 **out, th_model_info *info) {
    struct stat sb;
    if (stat(path, &sb) != 0) return th_fail(TH_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return th_hf_load(path, out, info);

    FILE *f;
    uint64_t size;
    th_status s = th_rfile_open(path, &f, &size);
    if (s != TH_OK) return s;
    unsigned char head[16] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);

    if (got >= 8 && memcmp(head, "THRMCKPT", 8) == 0) return load_checkpoint_info(path, out, info);
    if (got >= 4 && th_le32(head) == 20240326u) return th_llmc_load(path, out, info);
    if (got >= 4 && memcmp(head, "GGUF", 4) == 0) return th_gguf_load(path, out, info);
    /* safetensors: a plausible header length followed by the JSON's opening brace */
    if (got >= 9 && th_le64(head) <= size - 8 && head[8] == '{') {
        char dir[4096], cpath[4096];
        snprintf(dir, sizeof dir, "%s", path);
        if (!th_path_join(cpath, sizeof cpath, dirname(dir), "config.json"))
            return th_fail(TH_ERR_INVALID, "%s: path too long", path);
        if (stat(cpath, &sb) != 0)
            return th_fail(TH_ERR_IO, "%s: a safetensors file needs a config.json beside it (%s: %s)",
                           path, cpath, strerror(errno));
        return th_hf_load_files(cpath, path, out, info);
    }
    return th_fail(TH_ERR_FORMAT,
                   "%s: not a recognized model (expected a Hugging Face directory, a .safetensors "
                   "file, an llm.c .bin, a GGUF file or a thermo checkpoint)", path);
}
