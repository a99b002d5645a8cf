/* SPDX-License-Identifier: GPL-2.0 */
/* SHA-1 (FIPS 180-4), enough to compare the two ends of a transfer. */
#ifndef VSERIAL_SHA1_H
#define VSERIAL_SHA1_H

#include <stddef.h>
#include <stdint.h>

struct sha1 {
	uint32_t h[5];
	uint64_t bytes;
	uint8_t block[64];
	size_t fill;
};

void sha1_init(struct sha1 *s);
void sha1_update(struct sha1 *s, const void *data, size_t len);
void sha1_final(struct sha1 *s, uint8_t digest[20]);
/* Digest as 40 hex characters plus NUL. */
void sha1_hex(const uint8_t digest[20], char out[41]);

#endif
