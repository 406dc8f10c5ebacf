"""Every scenario of test_skopeo.py against Ceph RGW storage in proxy mode
(see t/lib/s3_scenarios.py).  Fails, never skips, without RGW."""

from s3_scenarios import use_s3

use_s3(globals(), "proxy")
