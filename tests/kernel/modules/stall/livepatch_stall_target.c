// SPDX-License-Identifier: GPL-2.0
/*
 * The target of livepatch_stall: a worker that sleeps in stall_target_hold()
 * for as long as the `hold` parameter is Y, so that function stays on its
 * stack and a livepatch replacing it cannot finish its transition.
 * echo N > /sys/module/livepatch_stall_target/parameters/hold lets it go.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/workqueue.h>

static bool hold = true;
module_param(hold, bool, 0644);
MODULE_PARM_DESC(hold, "keep the worker sleeping in stall_target_hold() (default Y)");

static DECLARE_COMPLETION(entered);

static noinline void stall_target_hold(void)
{
	pr_info("%s: holding\n", __func__);
	complete(&entered);
	while (READ_ONCE(hold))
		msleep(50);
	pr_info("%s: released\n", __func__);
}

static void stall_target_work(struct work_struct *work)
{
	stall_target_hold();
}

static DECLARE_WORK(work, stall_target_work);

static int livepatch_stall_target_init(void)
{
	schedule_work(&work);
	wait_for_completion(&entered);
	return 0;
}

static void livepatch_stall_target_exit(void)
{
	WRITE_ONCE(hold, false);
	flush_work(&work);
}

module_init(livepatch_stall_target_init);
module_exit(livepatch_stall_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("livepatch test: a worker sleeping in the function livepatch_stall replaces");
