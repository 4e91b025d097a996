/*
 * libFuzzer target for core/config.c: config_parse() on arbitrary bytes
 * must neither crash nor leak, and must keep its contract: 0 with every
 * field in range and every string terminated, or -EINVAL with one line
 * "NAME:LINE: ..." that a shorter buffer gets a terminated prefix of.
 * Single-threaded, as libFuzzer runs it.
 */
#include "core/config.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz/vm.toml"
#define FUZZ_HOST_RAM (8 * GiB)

static struct vm_config fuzz_cfg;

static void fuzz_assert(bool ok)
{
	if (!ok)
		abort();
}

static bool fuzz_terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static void fuzz_check_config(const struct vm_config *c)
{
	unsigned i, j;

	fuzz_assert(c->memory >= 16 * MiB && c->memory <= FUZZ_HOST_RAM && c->memory % (4 * KiB) == 0);
	fuzz_assert(c->vcpus >= 1 && c->vcpus <= CONFIG_MAX_VCPUS);
	fuzz_assert(fuzz_terminated(c->kernel, sizeof(c->kernel)) && c->kernel[0]);
	fuzz_assert(fuzz_terminated(c->initrd, sizeof(c->initrd)));
	fuzz_assert(fuzz_terminated(c->cmdline, sizeof(c->cmdline)));
	fuzz_assert(fuzz_terminated(c->serial_path, sizeof(c->serial_path)));
	fuzz_assert((c->serial_output == SERIAL_OUT_FILE) == (c->serial_path[0] != '\0'));
	fuzz_assert(c->n_iothreads <= CONFIG_MAX_IOTHREADS);
	for (i = 0; i < c->n_iothreads; i++) {
		const struct iothread_config *t = &c->iothreads[i];

		fuzz_assert(fuzz_terminated(t->name, sizeof(t->name)) && t->name[0]);
		fuzz_assert(t->n_cpus <= CONFIG_MAX_CPUS && t->poll_max_ns <= 1000000000);
		for (j = 0; j < t->n_cpus; j++)
			fuzz_assert(t->cpus[j] < CONFIG_MAX_CPUS);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char prefix[] = FUZZ_NAME ":";
	char err[512], small[24];
	int ret;

	ret = config_parse(FUZZ_NAME, (const char *)data, size, FUZZ_HOST_RAM, &fuzz_cfg,
			   err, sizeof(err));
	if (!ret) {
		fuzz_check_config(&fuzz_cfg);
		return 0;
	}
	fuzz_assert(ret == -EINVAL);
	fuzz_assert(fuzz_terminated(err, sizeof(err)) && !strchr(err, '\n'));
	fuzz_assert(!strncmp(err, prefix, strlen(prefix)) && strstr(err, ": expected "));
	ret = config_parse(FUZZ_NAME, (const char *)data, size, FUZZ_HOST_RAM, &fuzz_cfg,
			   small, sizeof(small));
	fuzz_assert(ret == -EINVAL && !strncmp(small, err, sizeof(small) - 1));
	return 0;
}
