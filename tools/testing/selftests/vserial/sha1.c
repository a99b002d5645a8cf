// SPDX-License-Identifier: GPL-2.0
#include <stdio.h>
#include <string.h>

#include "sha1.h"

static uint32_t rol(uint32_t v, int n)
{
	return (v << n) | (v >> (32 - n));
}

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

#define F_CH(b, c, d)	(((c ^ d) & b) ^ d)
#define F_PARITY(b, c, d)	(b ^ c ^ d)
#define F_MAJ(b, c, d)	((b & c) | ((b | c) & d))

/* The message schedule as a ring of 16 words, extended as rounds go. */
#define X(i)	w[(i) & 15]
#define XN(i)	(X(i) = rol(X((i) + 13) ^ X((i) + 8) ^ X((i) + 2) ^ X(i), 1))

/* One round; the callers rotate the roles of a..e instead of the values. */
#define ROUND(a, b, c, d, e, f, k, x) do {			\
	e += rol(a, 5) + f(b, c, d) + (k) + (x);		\
	b = rol(b, 30);						\
} while (0)

/* Five rounds bring a..e back to their own roles. */
#define ROUNDS5(f, k, i, x) do {				\
	ROUND(a, b, c, d, e, f, k, x(i));			\
	ROUND(e, a, b, c, d, f, k, x((i) + 1));			\
	ROUND(d, e, a, b, c, f, k, x((i) + 2));			\
	ROUND(c, d, e, a, b, f, k, x((i) + 3));			\
	ROUND(b, c, d, e, a, f, k, x((i) + 4));			\
} while (0)

/*
 * Straight-line rounds: under emulation (the tests hash every byte they
 * move inside TCG guests) each branch ends a translated block, so the
 * per-round tests of a compact loop cost more than the rounds.
 */
static void sha1_block(struct sha1 *s, const uint8_t *p)
{
	uint32_t w[16], a, b, c, d, e;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = load_be32(p + 4 * i);

	a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4];
	ROUNDS5(F_CH, 0x5a827999, 0, X);
	ROUNDS5(F_CH, 0x5a827999, 5, X);
	ROUNDS5(F_CH, 0x5a827999, 10, X);
	ROUND(a, b, c, d, e, F_CH, 0x5a827999, X(15));
	ROUND(e, a, b, c, d, F_CH, 0x5a827999, XN(16));
	ROUND(d, e, a, b, c, F_CH, 0x5a827999, XN(17));
	ROUND(c, d, e, a, b, F_CH, 0x5a827999, XN(18));
	ROUND(b, c, d, e, a, F_CH, 0x5a827999, XN(19));
	for (i = 20; i < 40; i += 5)
		ROUNDS5(F_PARITY, 0x6ed9eba1, i, XN);
	for (; i < 60; i += 5)
		ROUNDS5(F_MAJ, 0x8f1bbcdc, i, XN);
	for (; i < 80; i += 5)
		ROUNDS5(F_PARITY, 0xca62c1d6, i, XN);
	s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

void sha1_init(struct sha1 *s)
{
	static const uint32_t iv[5] = {
		0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0,
	};

	memcpy(s->h, iv, sizeof(iv));
	s->bytes = 0;
	s->fill = 0;
}

void sha1_update(struct sha1 *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t n;

	s->bytes += len;
	while (len) {
		if (!s->fill && len >= 64) {
			sha1_block(s, p);
			p += 64;
			len -= 64;
			continue;
		}
		n = 64 - s->fill;
		if (n > len)
			n = len;
		memcpy(s->block + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
		if (s->fill == 64) {
			sha1_block(s, s->block);
			s->fill = 0;
		}
	}
}

void sha1_final(struct sha1 *s, uint8_t digest[20])
{
	uint64_t bits = s->bytes * 8;
	uint8_t pad[72] = { 0x80 };
	size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;
	int i;

	for (i = 0; i < 8; i++)
		pad[padlen + i] = bits >> (56 - 8 * i);
	/* Hash the padding without counting it as data. */
	sha1_update(s, pad, padlen + 8);
	for (i = 0; i < 20; i++)
		digest[i] = s->h[i / 4] >> (24 - 8 * (i % 4));
}

void sha1_hex(const uint8_t digest[20], char out[41])
{
	int i;

	for (i = 0; i < 20; i++)
		sprintf(out + 2 * i, "%02x", digest[i]);
}
