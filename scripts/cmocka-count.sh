#!/usr/bin/env bash
# Sum cmocka's per-binary "[  PASSED  ] N test(s)." and "[  FAILED  ] N
# test(s)" lines read on stdin; print "PASSED FAILED".
awk '/^\[  PASSED  \] [0-9]+ test/ { p += $4 }
     /^\[  FAILED  \] [0-9]+ test/ { f += $4 }
     END { print p + 0, f + 0 }'
