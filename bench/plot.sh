#!/usr/bin/env bash
# PNG plots of the benchmark CSVs (gnuplot): bench/plot.sh RESULTS_DIR
#   cache_lookup.png      hit cost vs cached regions: regwatch (thread-safe,
#                         single-thread) and ucs_rcache, hot and random order
#   reg_rxe.png           registration cost vs size on rxe, uncached
#                         (reg+dereg) vs cached (a regwatch cache hit)
#   monitor_overhead.png  monitored / plain per monitor and workload
#   inval_latency.png     invalidation delivery latency, regwatch vs uffd
#   mirror_fill.png       mirror fill vs pinning, per page
# A plot whose CSV is missing is an error (the benchmark did not run).
set -u
R=${1:?usage: plot.sh RESULTS_DIR}
T=$(mktemp -d /tmp/regwatch-plot.XXXXXX)
trap 'rm -rf "$T"' EXIT
status=0
csv() { grep -v '^#' "$R/$1.csv" | tail -n +2; }
need() {
	[ -s "$R/$1.csv" ] && return 0
	echo "plot: $R/$1.csv missing: no $1.png"
	status=1
	return 1
}
plot() {	# plot NAME < gnuplot script
	if gnuplot >"$T/$1.log" 2>&1; then
		echo "plot: $R/$1.png"
	else
		echo "plot: gnuplot failed for $1:"; cat "$T/$1.log"; status=1
	fi
}
HEAD='set terminal pngcairo size 1200,520 font "sans,10" noenhanced
set datafile separator "\t"
set grid
set key top left'

# ---- cache lookup (host, ns)
if need cache_lookup; then
	for w in hot random; do
		for c in rw-mt rw-st ucs; do
			csv cache_lookup | awk -F, -v OFS='\t' -v w=$w -v c=$c \
				'$2 == w && $3 == c { print $1, $4, $5, $6 }' >"$T/cl-$w-$c.dat"
		done
	done
	plot cache_lookup <<EOG
$HEAD
set output "$R/cache_lookup.png"
set multiplot layout 1,2 title "Registration-cache hit (get + put), host real time, median and p10-p90 (from cache_lookup.csv)"
set logscale x
set logscale y
set xlabel "cached regions"
set ylabel "ns per hit"
set format x "%g"
do for [w in "hot random"] {
  set title (w eq "hot" ? "hot: the same region" : "random order over all regions")
  plot "$T/cl-".w."-rw-mt.dat" u 1:2:3:4 w yerrorlines lw 2 pt 7 t "regwatch (thread-safe)", \
       "$T/cl-".w."-rw-st.dat" u 1:2:3:4 w yerrorlines lw 2 pt 5 t "regwatch (single-thread)", \
       "$T/cl-".w."-ucs.dat" u 1:2:3:4 w yerrorlines lw 2 pt 9 t "UCX ucs_rcache 1.13"
}
unset multiplot
EOG
fi

# ---- registration on rxe (guest ratios)
if need reg_rxe; then
	csv reg_rxe | awk -F, '$1 == "reg" && $3 == "uncached" && $2 == 4096 { print $4 }' >"$T/unit"
	unit=$(cat "$T/unit")
	for v in uncached cached; do
		csv reg_rxe | awk -F, -v OFS='\t' -v v=$v -v u="${unit:-1}" \
			'$1 == "reg" && $3 == v { print $2 / 1024, $4 / u, $5 / u, $6 / u }' >"$T/rr-$v.dat"
	done
	plot reg_rxe <<EOG
$HEAD
set output "$R/reg_rxe.png"
set title "Registration per operation on rxe (QEMU TCG guest: ratios only), relative to ibv_reg_mr+ibv_dereg_mr of 4 KiB (from reg_rxe.csv)"
set logscale xy
set xlabel "buffer size (KiB)"
set ylabel "cost / (reg+dereg of 4 KiB)"
set format y "%g"
plot "$T/rr-uncached.dat" u 1:2:3:4 w yerrorlines lw 2 pt 7 t "uncached: ibv_reg_mr + ibv_dereg_mr", \
     "$T/rr-cached.dat" u 1:2:3:4 w yerrorlines lw 2 pt 5 t "cached: regwatch cache hit (get + put)", \
     "$T/rr-uncached.dat" u 1:(\$2/100) w lines dt 2 lc rgb "gray" t "1 % of uncached (target: cached below)"
EOG
fi

# ---- monitoring overhead (guest ratios)
if need monitor_overhead; then
	csv monitor_overhead | awk -F, -v OFS='\t' '$1 == "a" { r[$2, $3] = $7; if (!($2 in k)) { k[$2] = 1; ks[++n] = $2 } }
		END { for (i = 1; i <= n; i++)
			print "K=" ks[i], r[ks[i], "regwatch"], r[ks[i], "uffd"], r[ks[i], "uffd-2cpu"], r[ks[i], "ucm"] }' >"$T/mo-a.dat"
	csv monitor_overhead | awk -F, -v OFS='\t' '$1 != "a" { r[$1, $3] = $7; w[$1] = 1 }
		END { split("b c d", ws, " "); names["b"] = "b: watched cycle"; names["c"] = "c: madvise";
		      names["d"] = "d: malloc/free"; for (i = 1; i <= 3; i++) if (ws[i] in w)
			print names[ws[i]], r[ws[i], "regwatch"], r[ws[i], "uffd"], r[ws[i], "uffd-2cpu"], r[ws[i], "ucm"] }' >"$T/mo-bcd.dat"
	plot monitor_overhead <<EOG
$HEAD
set terminal pngcairo size 1400,560 font "sans,10" noenhanced
set output "$R/monitor_overhead.png"
set multiplot layout 1,2 title "Monitoring overhead in the QEMU TCG guest: monitored / plain, median over rounds (from monitor_overhead.csv)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key below
set ylabel "cost / cost without a monitor"
set yrange [0:*]
set title "a: mmap/touch/munmap of unwatched memory, K other watched ranges"
plot "$T/mo-a.dat" u 2:xtic(1) t "regwatch", "" u 3 t "userfaultfd, reader on the same CPU", "" u 4 t "userfaultfd, reader on the other CPU", "" u 5 t "UCX hooks (libucm)", 1 w lines dt 2 lc rgb "black" notitle
set title "b-d: watched memory, K other watched ranges (10^3; smoke: 10^2)"
plot "$T/mo-bcd.dat" u 2:xtic(1) t "regwatch", "" u 3 t "userfaultfd, reader on the same CPU", "" u 4 t "userfaultfd, reader on the other CPU", "" u 5 t "UCX hooks (libucm)", 1 w lines dt 2 lc rgb "black" notitle
unset multiplot
EOG
fi

# ---- invalidation latency (guest ratios)
if need inval_latency; then
	csv inval_latency | awk -F, -v OFS='\t' '{ print $1, $5, $6, $7 }' >"$T/il.dat"
	plot inval_latency <<EOG
$HEAD
set output "$R/inval_latency.png"
set title "Invalidation delivery latency from the start of munmap, in units of a plain munmap (QEMU TCG guest; from inval_latency.csv)"
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set ylabel "latency / plain munmap (median, p10-p90)"
set yrange [0:*]
set xtics rotate by -20 left
set bmargin 5
set key off
plot "$T/il.dat" u 2:3:4:xtic(1)
EOG
fi

# ---- mirror (guest ratios)
if need mirror_fill; then
	csv mirror_fill | awk -F, -v OFS='\t' '$2 == "fill: mirror map" { print $1, $7, $8, $9 }' >"$T/mf-fill.dat"
	csv mirror_fill | awk -F, -v OFS='\t' '$2 == "munmap mirrored" { print $1, $7, $8, $9 }' >"$T/mf-td.dat"
	csv mirror_fill | awk -F, -v OFS='\t' '$2 == "munmap unmirrored (device open)" { print $1, $7, $8, $9 }' >"$T/mf-tu.dat"
	plot mirror_fill <<EOG
$HEAD
set output "$R/mirror_fill.png"
set title "Mirror mode vs pinning (QEMU TCG guest, ratios; from mirror_fill.csv)"
set logscale x
set logscale y
set xlabel "pages"
set ylabel "ratio (median, p10-p90)"
set key top right
plot "$T/mf-fill.dat" u 1:2:3:4 w yerrorlines lw 2 pt 7 t "fill: mirror map / ibv_reg_mr", \
     "$T/mf-td.dat" u 1:2:3:4 w yerrorlines lw 2 pt 5 t "munmap of a mirrored range / plain munmap", \
     "$T/mf-tu.dat" u 1:2:3:4 w yerrorlines lw 2 pt 9 t "munmap, device open, unmirrored / plain munmap", \
     1 w lines dt 2 lc rgb "gray" notitle
EOG
fi
exit $status
