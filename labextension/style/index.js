import './base.css';
import './notebookrun.css';
