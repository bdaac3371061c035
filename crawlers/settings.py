"""Static Scrapy settings of the crawl process.

Per-crawl values (politeness, limits, user agent, output path) come from the crawl spec and are
applied on top of these by ``crawlers.run.build_settings``; the defaults here are the crawl
settings' defaults (``dataset_platform/contracts/crawl.py``), so they cannot drift from them.
"""

from dataset_platform.contracts.crawl import CrawlSettings

_DEFAULTS = CrawlSettings.defaults()

BOT_NAME = "dataset_platform"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

# Politeness and safety defaults (run.py overrides them from the spec).
ROBOTSTXT_OBEY = _DEFAULTS["obey_robots"]
USER_AGENT = _DEFAULTS["user_agent"]
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = _DEFAULTS["concurrency"]
DOWNLOAD_DELAY = _DEFAULTS["download_delay"]
DOWNLOAD_TIMEOUT = _DEFAULTS["download_timeout_s"]
DOWNLOAD_MAXSIZE = _DEFAULTS["max_bytes_per_page"]
DOWNLOAD_WARNSIZE = _DEFAULTS["max_bytes_per_page"]
RETRY_TIMES = _DEFAULTS["retry_times"]
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# No remote-control HTTP server (it runs code sent to it) and no job files in the user's profile.
REMOTE_CONTROL_ENABLED = False

# Only HTTP(S): a page must not make the crawler read local files or talk FTP/S3.
DOWNLOAD_HANDLERS = {"file": None, "ftp": None, "s3": None, "data": None}

# Record every response, whatever its status (the spider only follows links from 2xx HTML).
HTTPERROR_ALLOW_ALL = True

# Breadth-first, so a max_pages cut keeps the pages closest to the start URLs.
DEPTH_PRIORITY = 1
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"

ITEM_PIPELINES = {"crawlers.pipelines.GzipJsonLinesPipeline": 300}
# The pipeline is synchronous: processing a response's outputs (records and requests) in parallel
# buys nothing, while Scrapy starts CONCURRENT_ITEMS asyncio tasks for every response (100 by
# default: a large share of a crawl's CPU time, measured with bench/crawl.py).
CONCURRENT_ITEMS = 1

# Every request ends in one record (crawlers/spiders/site.py): the middlewares that would drop a
# request silently are replaced by ones raising exceptions the spider records, or disabled where
# the spider applies the rule itself (allowed domains, depth, URL length). Redirects of the
# spider's requests are followed by the spider (its requests carry dont_redirect, so that every hop
# gets a record); RedirectMiddleware stays enabled for robots.txt, which often redirects (http ->
# https, to another host): without it such a site's rules would be ignored.
DOWNLOADER_MIDDLEWARES = {
    "crawlers.middlewares.AddressGuardMiddleware": 10,
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawlers.middlewares.RecordingRobotsTxtMiddleware": 100,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawlers.middlewares.BackoffRetryMiddleware": 550,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": None,
    "crawlers.middlewares.BoundedHttpCompressionMiddleware": 590,
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
}
# Connections resolve through the address guard (refuses private/loopback/metadata addresses).
# (TWISTED_DNS_RESOLVER: Scrapy 2.19 warns that the DNS_RESOLVER name is deprecated.)
TWISTED_DNS_RESOLVER = "crawlers.guard.GuardedResolver"
# Retries back off exponentially (crawlers.middlewares.BackoffRetryMiddleware).
DATASET_PLATFORM_RETRY_BACKOFF_S = _DEFAULTS["retry_backoff_s"]
DATASET_PLATFORM_RETRY_BACKOFF_MAX_S = 30.0
DATASET_PLATFORM_RETRY_AFTER_MAX_S = 60.0
# Non-public addresses the crawl may connect to (IPs or CIDR networks; set per crawl).
DATASET_PLATFORM_ALLOW_ADDRESSES: list[str] = []

# Path of the gzip JSON Lines file the pipeline writes (set per crawl by run.py).
DATASET_PLATFORM_OUTPUT = ""

LOG_LEVEL = "INFO"
LOGSTATS_INTERVAL = 60.0
