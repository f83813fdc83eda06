// SPDX-License-Identifier: MIT
/* Byte patterns and comparisons; see bytes_util.h. */
#include "bytes_util.h"

#include <string.h>

void bu_pattern(char *p, size_t len, uint64_t tag)
{
	uint64_t x = (tag + 1) * 0x9e3779b97f4a7c15ULL;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	for (; i < len; i++)
		p[i] = (char)(x >> (8 * (i & 7)));
}

size_t bu_ndiff(const char *dev, const char *cpu, size_t len, size_t *first)
{
	size_t i, n = 0;

	if (!memcmp(dev, cpu, len))
		return 0;
	for (i = len; i-- > 0;)
		if (dev[i] != cpu[i]) {
			n++;
			*first = i;
		}
	return n;
}
