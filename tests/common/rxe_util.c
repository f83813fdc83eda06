// SPDX-License-Identifier: MIT
/* Loopback RC QP on rxe; see rxe_util.h. */
#include "rxe_util.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CQ_DEPTH 16

static void rxeu_err(const char *what, int err)
{
	fprintf(stderr, "rxe_util: %s: %s\n", what, strerror(err));
}

static struct ibv_context *open_by_name(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	int i;

	if (!list)
		return NULL;
	for (i = 0; list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name)) {
			ctx = ibv_open_device(list[i]);
			break;
		}
	ibv_free_device_list(list);
	return ctx;
}

/* RESET -> INIT -> RTR (destination: our own QP) -> RTS. */
static int connect_to_self(struct rxeu *rx)
{
	struct ibv_qp_attr a;
	union ibv_gid gid;
	int ret;

	ret = ibv_query_gid(rx->ctx, rx->port, RXEU_GID_INDEX, &gid);
	if (ret) {
		rxeu_err("ibv_query_gid", ret);
		return -ret;
	}

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = rx->port;
	a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
			    IBV_ACCESS_REMOTE_WRITE;
	ret = ibv_modify_qp(rx->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX |
			    IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	if (ret) {
		rxeu_err("modify_qp INIT", ret);
		return -ret;
	}

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = rx->qp->qp_num;
	a.rq_psn = 0;
	a.max_dest_rd_atomic = 4;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = gid;
	a.ah_attr.grh.sgid_index = RXEU_GID_INDEX;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = rx->port;
	ret = ibv_modify_qp(rx->qp, &a, IBV_QP_STATE | IBV_QP_AV |
			    IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			    IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			    IBV_QP_MIN_RNR_TIMER);
	if (ret) {
		rxeu_err("modify_qp RTR", ret);
		return -ret;
	}

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = 0;
	a.max_rd_atomic = 4;
	ret = ibv_modify_qp(rx->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT |
			    IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			    IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	if (ret) {
		rxeu_err("modify_qp RTS", ret);
		return -ret;
	}
	return 0;
}

int rxeu_open(struct rxeu *rx, const char *devname)
{
	struct ibv_qp_init_attr qa;
	int ret = -ENODEV;

	memset(rx, 0, sizeof(*rx));
	rx->port = 1;
	rx->ctx = open_by_name(devname ? devname : RXEU_DEFAULT_DEV);
	if (!rx->ctx) {
		fprintf(stderr, "rxe_util: no device %s\n",
			devname ? devname : RXEU_DEFAULT_DEV);
		return ret;
	}
	ret = -ENOMEM;
	rx->pd = ibv_alloc_pd(rx->ctx);
	if (!rx->pd)
		goto fail;
	rx->cq = ibv_create_cq(rx->ctx, CQ_DEPTH, NULL, NULL, 0);
	if (!rx->cq)
		goto fail;

	memset(&qa, 0, sizeof(qa));
	qa.send_cq = rx->cq;
	qa.recv_cq = rx->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 1;
	qa.cap.max_send_wr = CQ_DEPTH / 2;
	qa.cap.max_recv_wr = 1;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	rx->qp = ibv_create_qp(rx->pd, &qa);
	if (!rx->qp)
		goto fail;
	ret = connect_to_self(rx);
	if (ret)
		goto fail;
	return 0;
fail:
	if (ret == -ENOMEM)
		rxeu_err("allocating PD/CQ/QP", errno);
	rxeu_close(rx);
	return ret;
}

void rxeu_close(struct rxeu *rx)
{
	if (rx->qp)
		ibv_destroy_qp(rx->qp);
	if (rx->cq)
		ibv_destroy_cq(rx->cq);
	if (rx->pd)
		ibv_dealloc_pd(rx->pd);
	if (rx->ctx)
		ibv_close_device(rx->ctx);
	memset(rx, 0, sizeof(*rx));
}

struct ibv_mr *rxeu_reg_mr(struct rxeu *rx, void *addr, size_t len,
			   int access)
{
	struct ibv_mr *mr = ibv_reg_mr(rx->pd, addr, len, access);

	if (!mr)
		rxeu_err("ibv_reg_mr", errno);
	return mr;
}

int rxeu_dereg(struct ibv_mr *mr)
{
	int ret = mr ? ibv_dereg_mr(mr) : 0;

	if (ret)
		rxeu_err("ibv_dereg_mr", ret);
	return -ret;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int rxeu_poll(struct rxeu *rx, int timeout_ms, struct ibv_wc *wc)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int n;

	for (;;) {
		n = ibv_poll_cq(rx->cq, 1, wc);
		if (n < 0) {
			rxeu_err("ibv_poll_cq", EIO);
			return -EIO;
		}
		if (n == 1)
			break;
		if (now_ms() > deadline) {
			fprintf(stderr, "rxe_util: no completion in %d ms\n",
				timeout_ms);
			return -ETIMEDOUT;
		}
		/* rxe completes from kernel work: let it run */
		sched_yield();
	}
	if (wc->status != IBV_WC_SUCCESS) {
		fprintf(stderr, "rxe_util: completion error: %s\n",
			ibv_wc_status_str(wc->status));
		return -EIO;
	}
	return 0;
}

static int post_rdma(struct rxeu *rx, enum ibv_wr_opcode op,
		     struct ibv_mr *local, void *local_addr,
		     const struct ibv_mr *remote, uint64_t remote_addr,
		     size_t len, int timeout_ms)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)local_addr,
		.length = (uint32_t)len,
		.lkey = local->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = ++rx->next_wr_id,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad = NULL;
	struct ibv_wc wc;
	int ret;

	wr.wr.rdma.remote_addr = remote_addr;
	wr.wr.rdma.rkey = remote->rkey;
	ret = ibv_post_send(rx->qp, &wr, &bad);
	if (ret) {
		rxeu_err("ibv_post_send", ret);
		return -ret;
	}
	ret = rxeu_poll(rx, timeout_ms, &wc);
	if (!ret && wc.wr_id != wr.wr_id) {
		fprintf(stderr, "rxe_util: unexpected wr_id %llu\n",
			(unsigned long long)wc.wr_id);
		ret = -EIO;
	}
	return ret;
}

int rxeu_read(struct rxeu *rx, struct ibv_mr *sink, void *local_addr,
	      const struct ibv_mr *remote, uint64_t remote_addr, size_t len,
	      int timeout_ms)
{
	return post_rdma(rx, IBV_WR_RDMA_READ, sink, local_addr, remote,
			 remote_addr, len, timeout_ms);
}

int rxeu_write(struct rxeu *rx, struct ibv_mr *src, void *local_addr,
	       const struct ibv_mr *remote, uint64_t remote_addr, size_t len,
	       int timeout_ms)
{
	return post_rdma(rx, IBV_WR_RDMA_WRITE, src, local_addr, remote,
			 remote_addr, len, timeout_ms);
}
