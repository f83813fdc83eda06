/* SPDX-License-Identifier: MIT */
/*
 * A loopback RC queue pair on Soft-RoCE (rxe0 in the test guest): one
 * device talking to itself, GID index 1 (the IPv4-mapped GID), path MTU
 * 1024. That is the set-up verified to work in the guest (vm-notes.md).
 *
 * It exists to prove what an RDMA device sees through a registration:
 * register memory (which pins its pages), RDMA READ from it into a local
 * sink and compare with what the CPU sees. Functions return 0 or -errno
 * and print the reason on stderr.
 */
#ifndef RXE_UTIL_H
#define RXE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>

#define RXEU_DEFAULT_DEV "rxe0"
#define RXEU_GID_INDEX 1

struct rxeu {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	uint8_t port;
	uint64_t next_wr_id;
};

/* Open the device (NULL: rxe0) and bring a QP connected to itself to RTS. */
int rxeu_open(struct rxeu *rx, const char *devname);
void rxeu_close(struct rxeu *rx);

/* Register [addr, addr+len) with IBV_ACCESS_* flags; NULL on failure. */
struct ibv_mr *rxeu_reg_mr(struct rxeu *rx, void *addr, size_t len,
			   int access);
int rxeu_dereg(struct ibv_mr *mr);

/*
 * RDMA READ len bytes from remote_addr inside remote (needs
 * IBV_ACCESS_REMOTE_READ) into local_addr inside sink (needs
 * IBV_ACCESS_LOCAL_WRITE), and wait for the completion.
 */
int rxeu_read(struct rxeu *rx, struct ibv_mr *sink, void *local_addr,
	      const struct ibv_mr *remote, uint64_t remote_addr, size_t len,
	      int timeout_ms);

/* RDMA WRITE len bytes from local_addr (in src) to remote_addr in remote
 * (needs IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE). */
int rxeu_write(struct rxeu *rx, struct ibv_mr *src, void *local_addr,
	       const struct ibv_mr *remote, uint64_t remote_addr, size_t len,
	       int timeout_ms);

/* Wait for one completion; -ETIMEDOUT, or -EIO for an error status. */
int rxeu_poll(struct rxeu *rx, int timeout_ms, struct ibv_wc *wc);

#endif /* RXE_UTIL_H */
