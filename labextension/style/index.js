import './base.css';
import './workflows.css';
import './notebookrun.css';
